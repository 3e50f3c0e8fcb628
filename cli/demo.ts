// npm run demo: a guided tour of Tally against the running system (`npm start`), every call through the
// gateway with the generated Connect clients, each printed with its trace id to look up in Jaeger.
// TALLY_URL is the gateway and JAEGER_URL where traces are shown (cli/config.ts); tokens are minted
// with the gateway's development secret, as `npm run token` does.
import { create } from "@bufbuild/protobuf";
import { EntryDirection, EntryLayer } from "../gen/tally/account/v1/ledger_pb";
import { MoneySchema } from "../gen/tally/common/v1/money_pb";
import { ReviewStatus } from "../gen/tally/risk/v1/risk_pb";
import { TransferStatus, type Transfer } from "../gen/tally/transactions/v1/transfer_pb";
import { developmentToken } from "../gateway/src/auth/tokens";
import { newId } from "../platform/ids";
import { formatMoney } from "../platform/money";
import { cliConfig } from "./config";
import { tallyClients, traced, type Traced } from "./gateway-clients";

const CURRENCY = "USD";
const usd = (minor: bigint) => create(MoneySchema, { amount: minor, currency: CURRENCY });
const show = (minor: bigint) => formatMoney(minor, CURRENCY);
const statusName = (status: TransferStatus) => TransferStatus[status];
const answerOf = <T>(result: Traced<T>) => result.answer;

/** One call of the tour: what it did, what came of it, and its trace. */
async function step<T>(what: string, call: Parameters<typeof traced<T>>[0], outcome: (answer: T) => string): Promise<Traced<T>> {
  const result = await traced(call);
  line(what, outcome(result.answer), result.traceId);
  return result;
}

const line = (what: string, outcome: string, traceId: string) => process.stdout.write(`   [trace ${traceId}] ${what}: ${outcome}\n`);

const heading = (text: string) => process.stdout.write(`\n${text}\n`);

function expectStatus(transfer: Transfer | undefined, status: TransferStatus): Transfer {
  if (!transfer || transfer.status !== status) {
    throw new Error(`expected transfer ${transfer?.id} to be ${statusName(status)}, but it is ${transfer ? statusName(transfer.status) : "missing"}`);
  }
  return transfer;
}

async function main(): Promise<void> {
  const { TALLY_URL: url, JAEGER_URL: jaeger, gateway } = cliConfig();
  const run = newId().replace(/-/g, "").slice(-6);
  const aliceId = `alice-${run}`;
  const bobId = `bob-${run}`;
  const key = (what: string) => `demo-${run}-${what}`;
  const verifiedBy = gateway();
  const teller = tallyClients(url, await developmentToken(verifiedBy, "teller"));
  const analyst = tallyClients(url, await developmentToken(verifiedBy, "analyst"));
  const alice = tallyClients(url, await developmentToken(verifiedBy, "customer", { customerId: aliceId }));

  process.stdout.write(`Tally demo through the gateway at ${url}; every call names its trace.\n`);

  heading("1. A teller opens accounts for two customers");
  const open = async (customerId: string) =>
    answerOf(await step(`open a ${CURRENCY} account for ${customerId}`, (o) => teller.account.createAccount({ requestId: key(customerId), customerId, currency: CURRENCY }, o), (a) => `account ${a.account?.id}`))
      .account!.id;
  const aliceAccount = await open(aliceId);
  const bobAccount = await open(bobId);

  heading("2. The teller deposits cash into Alice's account");
  answerOf(
    await step(`deposit ${show(500_000n)}`, (o) => teller.transactions.createDeposit({ requestId: key("deposit"), accountId: aliceAccount, amount: usd(500_000n) }, o), (r) =>
      statusName(expectStatus(r.transfer, TransferStatus.POSTED).status),
    ),
  );

  heading("3. Alice pays Bob");
  const paid = await step(`transfer ${show(2_500n)} to Bob`, (o) => alice.transactions.createTransfer({ requestId: key("payment"), fromAccountId: aliceAccount, toAccountId: bobAccount, amount: usd(2_500n) }, o), (r) =>
      statusName(expectStatus(r.transfer, TransferStatus.POSTED).status),
  );
  const payment = answerOf(paid).transfer!;

  heading("4. Risk declines a transfer far beyond the limits; Alice sees the decision, the bank why");
  const declined = answerOf(
    await step(`transfer ${show(100_000_000n)} to Bob`, (o) => alice.transactions.createTransfer({ requestId: key("too-large"), fromAccountId: aliceAccount, toAccountId: bobAccount, amount: usd(100_000_000n) }, o), (r) =>
      `${statusName(expectStatus(r.transfer, TransferStatus.DECLINED).status)} by risk`,
    ),
  ).transfer!;
  answerOf(
    await step("the analyst reads the rules it met", (o) => analyst.transactions.getTransfer({ transferId: declined.id }, o), (r) => r.transfer!.risk!.reasons.join("; ")),
  );

  heading("5. A large transfer from a new account waits for an analyst, who approves it");
  const large = answerOf(
    await step(`transfer ${show(120_000n)} to Bob`, (o) => alice.transactions.createTransfer({ requestId: key("large"), fromAccountId: aliceAccount, toAccountId: bobAccount, amount: usd(120_000n) }, o), (r) =>
      `${statusName(expectStatus(r.transfer, TransferStatus.HELD).status)} for review`,
    ),
  ).transfer!;
  const reviews = answerOf(
    await step("the analyst lists open reviews of the account", (o) => analyst.risk.listReviews({ accountId: aliceAccount, status: ReviewStatus.OPEN }, o), (r) =>
      `${r.reviews.length} open (${r.reviews.flatMap((review) => review.hits.map((hit) => `${hit.ruleName} (v${hit.ruleVersion})`)).join("; ")})`,
    ),
  );
  const review = reviews.reviews.find((r) => r.transferId === large.id);
  if (!review) throw new Error(`no open review for transfer ${large.id}`);
  answerOf(
    await step("the analyst approves it", (o) => analyst.risk.resolveReview({ reviewId: review.id, resolution: ReviewStatus.APPROVED, note: "known customer, expected payment" }, o), (r) =>
      ReviewStatus[r.review!.status],
    ),
  );
  answerOf(await waitForStatus(alice, large.id, TransferStatus.POSTED));

  heading("6. A card-style hold, captured in part");
  const hold = answerOf(
    await step(`authorize ${show(8_000n)} to Bob`, (o) => alice.transactions.authorizeTransfer({ requestId: key("hold"), fromAccountId: aliceAccount, toAccountId: bobAccount, amount: usd(8_000n), expiresInSeconds: 3600n }, o), (r) =>
      statusName(expectStatus(r.transfer, TransferStatus.HELD).status),
    ),
  ).transfer!;
  answerOf(
    await step(`capture ${show(5_000n)} of it`, (o) => alice.transactions.captureTransfer({ requestId: key("capture"), transferId: hold.id, amount: 5_000n }, o), (r) => {
      const t = expectStatus(r.transfer, TransferStatus.POSTED);
      return `captured ${show(t.capturedAmount)}, ${show(hold.amount!.amount - t.capturedAmount)} released`;
    }),
  );

  heading("7. The teller reverses part of Alice's payment to Bob");
  answerOf(
    await step(`reverse ${show(1_000n)} of the ${show(2_500n)} payment`, (o) => teller.transactions.reverseTransfer({ requestId: key("reversal"), transferId: payment.id, amount: 1_000n, reason: "partial refund" }, o), (r) =>
      `reversal ${statusName(expectStatus(r.reversal, TransferStatus.POSTED).status)}, ${show(r.original!.reversedAmount)} reversed`,
    ),
  );

  heading("8. Alice's statement");
  const settlement = answerOf(await step(`the ${CURRENCY} settlement account`, (o) => teller.account.getSystemAccount({ currency: CURRENCY }, o), (r) => `account ${r.account?.id}`)).account!.id;
  const names: Record<string, string> = { [bobAccount]: "Bob", [settlement]: "settlement" };
  const balance = answerOf(await step("balance", (o) => alice.account.getBalance({ accountId: aliceAccount }, o), (r) => `posted ${show(r.balance!.posted)}, available ${show(r.balance!.available)}`)).balance!;
  const statement = answerOf(await step("entries", (o) => alice.account.listEntries({ accountId: aliceAccount, layer: EntryLayer.POSTED, pageSize: 50 }, o), (r) => `${r.entries.length} posted entries`));
  for (const entry of [...statement.entries].reverse()) {
    const signed = entry.direction === EntryDirection.DEBIT ? -entry.amount : entry.amount;
    const other = names[entry.counterpartyAccountId] ?? entry.counterpartyAccountId;
    process.stdout.write(`     ${show(signed).padStart(16)}  ${other.padEnd(12)} balance ${show(entry.postedBalanceAfter)}\n`);
  }
  const expected = 500_000n - 2_500n - 120_000n - 5_000n + 1_000n;
  if (balance.posted !== expected || balance.available !== expected) {
    throw new Error(`Alice's balance is ${show(balance.posted)} posted, ${show(balance.available)} available; the tour adds up to ${show(expected)}`);
  }
  process.stdout.write(`\n   The balance adds up: ${show(expected)}.\n`);
  process.stdout.write(`\nEach call is one trace through the gateway and every service it reached. Alice's payment to Bob in Jaeger:\n   ${jaeger}/trace/${paid.traceId}\n`);
}

/** Polls a transfer until it reaches `status`: the approval reaches transactions as an event, not in the analyst's call. */
async function waitForStatus(client: ReturnType<typeof tallyClients>, transferId: string, status: TransferStatus) {
  const until = Date.now() + 30_000;
  for (;;) {
    const result = await traced((o) => client.transactions.getTransfer({ transferId }, o));
    if (result.answer.transfer?.status === status || Date.now() > until) {
      expectStatus(result.answer.transfer, status);
      line("the held transfer, once the approval arrives", statusName(status), result.traceId);
      return result;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

main().catch((err: Error) => {
  process.stderr.write(`\ndemo failed: ${err.message}\n`);
  process.exit(1);
});
