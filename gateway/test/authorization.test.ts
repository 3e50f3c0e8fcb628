import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AccountStatus } from "../../gen/tally/account/v1/account_pb";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { RuleAction, RuleKind, ReviewStatus } from "../../gen/tally/risk/v1/risk_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { RiskDecision, TransferStatus } from "../../gen/tally/transactions/v1/transfer_pb";
import { newId } from "../../platform/ids";
import { eventually } from "../../test/support/events";
import { balanceOf, fund, openAccount, transferRequest, usd } from "../../services/transactions/test/fixtures";
import { publicMethods } from "../src/exposure";
import type { RoleName } from "../src/auth/principal";
import { bearer, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";

let h: GatewayHarness;
beforeAll(async () => {
  h = await startGatewayHarness();
});
afterAll(() => h.stop());

/** One customer's things: an account with money, a posted transfer out of it, two holds on it, and a transfer paid into it. */
interface Holdings {
  customer: string;
  account: string;
  transfer: string;
  holdToCapture: string;
  holdToVoid: string;
  incoming: string;
}

let customers = 0;
async function holdings(): Promise<Holdings> {
  const customer = `bola-${++customers}-${newId().slice(-6)}`;
  const account = (await openAccount(h, { customerId: customer })).id;
  const stranger = (await openAccount(h)).id;
  await fund(h, account, 10_000n);
  await fund(h, stranger, 10_000n);
  const { transfer } = await h.transactions.createTransfer(transferRequest(account, stranger, 100n));
  const hold = async () => (await h.transactions.authorizeTransfer(transferRequest(account, stranger, 100n))).transfer!.id;
  const { transfer: incoming } = await h.transactions.createTransfer(transferRequest(stranger, account, 100n));
  return { customer, account, transfer: transfer!.id, holdToCapture: await hold(), holdToVoid: await hold(), incoming: incoming!.id };
}

/**
 * Who may call what, written out here independently of the protos' policy
 * options, so that a wrong option fails this test. "customer" means: on
 * their own resources only. Admins may call everything.
 */
const EXPECTED: Record<string, { roles: RoleName[]; request: (x: Holdings) => object }> = {
  "AccountService.CreateAccount": { roles: ["teller", "service"], request: (x) => ({ requestId: newId(), customerId: x.customer, currency: "USD" }) },
  "AccountService.GetAccount": { roles: ["customer", "teller", "analyst", "service"], request: (x) => ({ accountId: x.account }) },
  "AccountService.ListAccounts": { roles: ["customer", "teller", "analyst", "service"], request: (x) => ({ customerId: x.customer }) },
  "AccountService.GetBalance": { roles: ["customer", "teller", "analyst", "service"], request: (x) => ({ accountId: x.account }) },
  "AccountService.ListEntries": { roles: ["customer", "teller", "analyst", "service"], request: (x) => ({ accountId: x.account }) },
  "AccountService.GetSystemAccount": { roles: ["teller", "analyst", "service"], request: () => ({ currency: "USD" }) },
  "AccountService.FreezeAccount": { roles: ["teller", "analyst", "service"], request: (x) => ({ accountId: x.account, reason: "matrix" }) },
  "AccountService.UnfreezeAccount": { roles: ["teller", "analyst", "service"], request: (x) => ({ accountId: x.account, reason: "matrix" }) },
  "AccountService.CloseAccount": { roles: ["teller", "service"], request: (x) => ({ accountId: x.account, reason: "matrix" }) },
  "TransactionService.CreateTransfer": { roles: ["customer", "teller", "service"], request: (x) => transferRequest(x.account, x.account === mine.account ? theirs.account : mine.account, 1n) },
  "TransactionService.AuthorizeTransfer": { roles: ["customer", "teller", "service"], request: (x) => transferRequest(x.account, x.account === mine.account ? theirs.account : mine.account, 1n) },
  "TransactionService.CaptureTransfer": { roles: ["customer", "teller", "service"], request: (x) => ({ requestId: newId(), transferId: x.holdToCapture }) },
  "TransactionService.VoidTransfer": { roles: ["customer", "teller", "service"], request: (x) => ({ requestId: newId(), transferId: x.holdToVoid }) },
  "TransactionService.GetTransfer": { roles: ["customer", "teller", "analyst", "service"], request: (x) => ({ transferId: x.transfer }) },
  "TransactionService.ListTransfers": { roles: ["customer", "teller", "analyst", "service"], request: (x) => ({ accountId: x.account }) },
  "TransactionService.CreateDeposit": { roles: ["teller", "service"], request: (x) => ({ requestId: newId(), accountId: x.account, amount: usd(1n) }) },
  "TransactionService.CreateWithdrawal": { roles: ["teller", "service"], request: (x) => ({ requestId: newId(), accountId: x.account, amount: usd(1n) }) },
  "TransactionService.ReverseTransfer": { roles: ["teller", "service"], request: (x) => ({ requestId: newId(), transferId: x.transfer, amount: 1n }) },
  "TransactionService.BatchCreateTransfers": { roles: ["teller", "service"], request: (x) => ({ transfers: [transferRequest(x.account, theirs.account, 1n)] }) },
  "RiskService.GetAssessment": { roles: ["analyst", "service"], request: () => ({ assessmentId: newId() }) },
  "RiskService.GetRiskProfile": { roles: ["analyst", "service"], request: (x) => ({ accountId: x.account }) },
  "RiskService.CreateRule": {
    roles: ["analyst"],
    request: () => ({ rule: { name: `never-${newId()}`, kind: RuleKind.ASSESSMENT, expression: "false", action: RuleAction.REVIEW, enabled: false } }),
  },
  "RiskService.UpdateRule": { roles: ["analyst"], request: () => ({ ruleId: newId(), rule: { name: "x", kind: RuleKind.ASSESSMENT, expression: "false", action: RuleAction.REVIEW } }) },
  "RiskService.GetRule": { roles: ["analyst"], request: () => ({ ruleId: newId() }) },
  "RiskService.ListRules": { roles: ["analyst"], request: () => ({}) },
  "RiskService.EnableRule": { roles: ["analyst"], request: () => ({ ruleId: newId() }) },
  "RiskService.DisableRule": { roles: ["analyst"], request: () => ({ ruleId: newId() }) },
  "RiskService.TestRule": { roles: ["analyst"], request: () => ({ kind: RuleKind.ASSESSMENT, expression: "true", inputJson: "{}" }) },
  "RiskService.ListReviews": { roles: ["analyst"], request: (x) => ({ accountId: x.account }) },
  "RiskService.GetReview": { roles: ["analyst"], request: () => ({ reviewId: newId() }) },
  "RiskService.ResolveReview": { roles: ["analyst"], request: () => ({ reviewId: newId(), resolution: ReviewStatus.APPROVED, note: "matrix" }) },
  "RiskService.ListAlerts": { roles: ["analyst"], request: (x) => ({ accountId: x.account }) },
};

const SERVICES: DescService[] = [AccountService, TransactionService, RiskService];
const PUBLIC: DescMethod[] = SERVICES.flatMap(publicMethods);
// Writes that would spoil later rows of the matrix go last.
const ORDER = ["FreezeAccount", "UnfreezeAccount", "CloseAccount"];
const ordered = [...PUBLIC].sort((a, b) => ORDER.indexOf(a.name) - ORDER.indexOf(b.name));
const nameOf = (m: DescMethod) => `${m.parent.name}.${m.name}`;

type Outcome = { ok: true; response: Record<string, unknown> } | { ok: false; code: Code; reason: string; field: string; message: string };

async function call(method: DescMethod, request: object, token: string, base = h.gateway.base): Promise<Outcome> {
  const client = createClient(method.parent, createConnectTransport({ baseUrl: base, httpVersion: "1.1", interceptors: [bearer(token)] })) as unknown as Record<string, (r: object) => Promise<Record<string, unknown>>>;
  try {
    return { ok: true, response: await client[method.localName](request) };
  } catch (e) {
    const err = ConnectError.from(e);
    return { ok: false, code: err.code, reason: err.findDetails(ErrorInfoSchema)[0]?.reason ?? "", field: err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field ?? "", message: err.rawMessage };
  }
}

let mine: Holdings;
let theirs: Holdings;

it("the expected table covers exactly the public methods", () => {
  expect(Object.keys(EXPECTED).sort()).toEqual(PUBLIC.map(nameOf).sort());
});

describe.each(["customer", "teller", "analyst", "admin", "service"] as RoleName[])("the %s role, on every public method, for its own and another customer's resources", (role) => {
  beforeAll(async () => {
    [mine, theirs] = [await holdings(), await holdings()];
  });

  it.each(ordered.map((m) => [nameOf(m), m] as const))("%s", async (name, method) => {
    const token = await tokenFor(role, role === "customer" ? mine.customer : undefined);
    const allowed = role === "admin" || EXPECTED[name].roles.includes(role);
    const own = await call(method, EXPECTED[name].request(mine), token);
    const other = await call(method, EXPECTED[name].request(theirs), token);
    if (!allowed) {
      for (const outcome of [own, other]) expect(outcome).toMatchObject({ ok: false, code: Code.PermissionDenied, reason: "PERMISSION_DENIED" });
      return;
    }
    // Allowed: the call reached the service, which may still refuse it on its merits (an unknown rule id, a closed account).
    for (const outcome of [own, other]) {
      // Refused on its merits, never for who asked nor for want of a service to answer.
      if (!outcome.ok) expect([Code.NotFound, Code.FailedPrecondition, Code.InvalidArgument, Code.AlreadyExists, Code.OutOfRange]).toContain(outcome.code);
    }
    if (role !== "customer") return;
    expect(own.ok).toBe(true);
    if (name === "AccountService.ListAccounts") {
      expect(other).toEqual({ ok: true, response: expect.objectContaining({ accounts: [] }) });
    } else {
      expect(other).toMatchObject({ ok: false, code: Code.NotFound });
    }
  });
});

describe("BOLA: another customer's resource is answered exactly as a missing one", () => {
  const missing = (x: Holdings): Holdings => ({ ...x, account: newId(), transfer: newId(), holdToCapture: newId(), holdToVoid: newId(), incoming: newId() });
  const idsOf = (x: Holdings) => [x.account, x.transfer, x.holdToCapture, x.holdToVoid, x.incoming];
  const withoutIds = (outcome: Outcome, x: Holdings) => (outcome.ok ? outcome : { ...outcome, message: idsOf(x).reduce((m, id) => m.replaceAll(id, "<id>"), outcome.message) });

  beforeAll(async () => {
    [mine, theirs] = [await holdings(), await holdings()];
  });

  const owned = PUBLIC.filter((m) => EXPECTED[nameOf(m)].roles.includes("customer") && m.name !== "ListAccounts");

  it.each(owned.map((m) => [nameOf(m), m] as const))("%s", async (name, method) => {
    const token = await tokenFor("customer", mine.customer);
    const ghost = missing(theirs);
    const other = await call(method, EXPECTED[name].request(theirs), token);
    const none = await call(method, EXPECTED[name].request(ghost), token);
    expect(other).toMatchObject({ ok: false, code: Code.NotFound });
    expect(withoutIds(other, theirs)).toEqual(withoutIds(none, ghost));
  });

  it("over REST too, with the same status and body", async () => {
    const token = await tokenFor("customer", mine.customer);
    const get = async (path: string) => {
      const res = await fetch(`${h.gateway.base}${path}`, { headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: (await res.text()).replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<id>") };
    };
    for (const path of ["/v1/accounts/{}", "/v1/accounts/{}/balance", "/v1/accounts/{}/entries", "/v1/accounts/{}/transfers"]) {
      const other = await get(path.replace("{}", theirs.account));
      expect(other.status).toBe(404);
      expect(other).toEqual(await get(path.replace("{}", newId())));
    }
    expect(await get(`/v1/transfers/${theirs.transfer}`)).toEqual(await get(`/v1/transfers/${newId()}`));
  });

  it("a customer reads a transfer paid into their account, but cannot capture or void a hold paid to them", async () => {
    const token = await tokenFor("customer", theirs.customer);
    const byName = (name: string) => PUBLIC.find((m) => nameOf(m) === name)!;
    // theirs.incoming came from a stranger; mine's holds are paid to a stranger too, so build holds paid into theirs.
    const hold = (await h.transactions.authorizeTransfer(transferRequest(mine.account, theirs.account, 5n))).transfer!.id;
    expect((await call(byName("TransactionService.GetTransfer"), { transferId: theirs.incoming }, token)).ok).toBe(true);
    expect((await call(byName("TransactionService.GetTransfer"), { transferId: hold }, token)).ok).toBe(true);
    for (const name of ["TransactionService.CaptureTransfer", "TransactionService.VoidTransfer"]) {
      expect(await call(byName(name), { requestId: newId(), transferId: hold }, token)).toMatchObject({ ok: false, code: Code.NotFound, reason: "TRANSFER_NOT_FOUND" });
    }
  });

  it("nothing a customer tries on another's resources changes them", async () => {
    const token = await tokenFor("customer", mine.customer);
    const state = async () => ({
      balance: await balanceOf(h, theirs.account),
      transfers: (await h.transactions.listTransfers({ accountId: theirs.account })).transfers.map((t) => [t.id, t.status]),
    });
    const before = await state();
    for (const method of owned) await call(method, EXPECTED[nameOf(method)].request(theirs), token);
    expect(await state()).toEqual(before);
  });
});

describe("what a customer sees of the bank's own workings", () => {
  const byName = (name: string) => PUBLIC.find((m) => nameOf(m) === name)!;
  const asCaller = (name: string, request: object, token: string) =>
    call(byName(name), request, token).then((outcome) => (outcome.ok ? outcome.response : Promise.reject(new Error(`${name}: ${outcome.message}`))));

  it("risk's rules, score and ids, an analyst's note and why an account was frozen stay with the bank; risk's decision shows", async () => {
    const [payer, payee] = [`view-payer-${newId().slice(-6)}`, `view-payee-${newId().slice(-6)}`];
    const from = (await openAccount(h, { customerId: payer })).id;
    const to = (await openAccount(h, { customerId: payee })).id;
    await fund(h, from, 5_000_000n);
    const [asPayer, asPayee, asTeller] = [await tokenFor("customer", payer), await tokenFor("customer", payee), await tokenFor("teller")];
    const hidden = { score: 0, reasons: [], assessmentId: "", reviewId: "" };

    // A large amount from a days-old account: held for review.
    const { transfer } = (await asCaller("TransactionService.CreateTransfer", transferRequest(from, to, 2_000_000n), asPayer)) as { transfer: { id: string } };
    expect(transfer).toMatchObject({ status: TransferStatus.HELD, risk: { decision: RiskDecision.REVIEW, ...hidden } });
    const read = (token: string) => asCaller("TransactionService.GetTransfer", { transferId: transfer.id }, token);
    const forTeller = (await read(asTeller)) as { transfer: { risk: { reasons: string[]; assessmentId: string; reviewId: string } } };
    expect(forTeller.transfer.risk.reasons.length).toBeGreaterThan(0);
    expect(forTeller.transfer.risk.assessmentId).not.toBe("");
    for (const token of [asPayer, asPayee]) expect(await read(token)).toMatchObject({ transfer: { risk: { decision: RiskDecision.REVIEW, ...hidden } } });
    expect(await asCaller("TransactionService.ListTransfers", { accountId: from }, asPayer)).toMatchObject({ transfers: [{ id: transfer.id, risk: hidden }] });

    // Declined in review, with the analyst's note.
    const review = await eventually(async () => (await h.risk.listReviews({ accountId: from })).reviews[0]);
    await h.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.DECLINED, note: "mule ring" });
    await eventually(async () => ((await read(asTeller)) as { transfer: { status: TransferStatus } }).transfer.status === TransferStatus.VOIDED);
    expect(await read(asTeller)).toMatchObject({ transfer: { failureMessage: "mule ring" } });
    expect(await read(asPayer)).toMatchObject({ transfer: { status: TransferStatus.VOIDED, failureMessage: "declined by risk" } });

    // Frozen, with the bank's reason.
    await h.accounts.freezeAccount({ accountId: from, reason: "investigation" });
    expect(await asCaller("AccountService.GetAccount", { accountId: from }, asTeller)).toMatchObject({ account: { status: AccountStatus.FROZEN, statusReason: "investigation" } });
    expect(await asCaller("AccountService.GetAccount", { accountId: from }, asPayer)).toMatchObject({ account: { status: AccountStatus.FROZEN, statusReason: "" } });
  });
});
