import { formatMoney, parseMoney } from "./money";

describe("money as people read and write it", () => {
  it.each([
    [0n, "USD", "USD 0.00"],
    [5n, "USD", "USD 0.05"],
    [123456n, "USD", "USD 1,234.56"],
    [-250n, "EUR", "EUR -2.50"],
    [1500n, "JPY", "JPY 1,500"],
    [1234n, "BHD", "BHD 1.234"],
    [9_223_372_036_854_775_807n, "USD", "USD 92,233,720,368,547,758.07"],
  ])("formats %p %s as %s", (minor, currency, text) => {
    expect(formatMoney(minor, currency)).toBe(text);
  });

  it.each([
    ["12", "USD", 1200n],
    ["12.5", "USD", 1250n],
    ["1,234.56", "USD", 123456n],
    ["0.01", "USD", 1n],
    ["1500", "JPY", 1500n],
    ["1.234", "BHD", 1234n],
  ])("reads %s %s as %p minor units", (text, currency, minor) => {
    expect(parseMoney(text, currency)).toBe(minor);
  });

  it.each([["1.234", "USD"], ["1.5", "JPY"], ["-5", "USD"], ["1e3", "USD"], ["12,34", "USD"], ["", "USD"], ["ten", "USD"]])("refuses %p in %s", (text, currency) => {
    expect(parseMoney(text, currency)).toBeUndefined();
  });
});
