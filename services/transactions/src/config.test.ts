import { LONGEST_HOLD_SECONDS, transactionsConfig } from "./config";

describe("the transactions service's hold lengths", () => {
  it.each(["HOLD_SECONDS", "REVIEW_HOLD_SECONDS"])("refuses a %s longer than the ledger's longest hold, which it would refuse every time", (name) => {
    expect(transactionsConfig({ [name]: String(LONGEST_HOLD_SECONDS) })[name as "HOLD_SECONDS"]).toBe(LONGEST_HOLD_SECONDS);
    expect(() => transactionsConfig({ [name]: String(LONGEST_HOLD_SECONDS + 1) })).toThrow(name);
  });
});
