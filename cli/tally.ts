// `npm run tally -- <command>`: Tally for operators, through the gateway with the generated Connect
// clients. Answers are printed as proto3 JSON on stdout, and each call's trace id on stderr.
import { parseArgs } from "node:util";
import { create, toJsonString, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { LedgerService, ReconcileResponseSchema } from "../gen/tally/account/v1/ledger_service_pb";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { MoneySchema } from "../gen/tally/common/v1/money_pb";
import { ReviewStatus } from "../gen/tally/risk/v1/risk_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../gen/tally/transactions/v1/transaction_service_pb";
import type { RoleName } from "../gateway/src/auth/principal";
import { developmentToken } from "../gateway/src/auth/tokens";
import { createServiceClient } from "../platform/grpc/client";
import { newId } from "../platform/ids";
import { isKnownCurrency, parseMoney } from "../platform/money";
import { cliConfig } from "./config";
import { tailEvents } from "./events-tail";
import { gatewayTransport, traced } from "./gateway-clients";

const USAGE = `usage: npm run tally -- <command> [--as <role>] [--url <gateway>]

  accounts open <customer> <currency>      open an account
  accounts get <account>                   an account
  accounts list <customer>                 a customer's accounts
  accounts freeze|unfreeze <account>       stop or allow money moving (--reason)
  balance <account>                        its balance
  statement <account>                      its newest entries (--limit, default 20)
  deposit <account> <amount> <currency>    cash in, e.g. deposit <account> 100.50 USD
  withdraw <account> <amount> <currency>   cash out
  transfer <from> <to> <amount> <currency> move money between accounts
  transfers get <transfer>                 a transfer
  transfers list <account>                 an account's transfers, newest first (--limit)
  transfers reverse <transfer> [<amount> <currency>]  undo a transfer, or part of it (--reason)
  reviews list                             open reviews (--account)
  reviews approve|decline <review>         resolve one (--note)
  events tail                              follow the event stream (--subject, --from-start, --limit)
  reconcile                                check every ledger invariant (exit 1 when one is broken)

The gateway is TALLY_URL (http://127.0.0.1:8080). The token is TALLY_TOKEN, or a development token
minted for the role (--as; teller, or analyst for reviews). Creates carry a new request id, or
--request-id to retry one safely. events tail reads JetStream at NATS_URL, stream NATS_STREAM;
reconcile asks the account service at ACCOUNT_SERVICE_URL (127.0.0.1:50051) directly.`;

class UsageError extends Error {}

const { positionals, values: flags } = parseArgs({
  allowPositionals: true,
  options: {
    as: { type: "string" },
    url: { type: "string" },
    reason: { type: "string", default: "" },
    note: { type: "string", default: "" },
    limit: { type: "string" },
    account: { type: "string", default: "" },
    subject: { type: "string" },
    "from-start": { type: "boolean", default: false },
    "request-id": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

const requestId = () => flags["request-id"] ?? `tally-cli-${newId()}`;

function limit(fallback: number): number {
  const value = Number(flags.limit ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new UsageError(`--limit must be a whole number above 0, not ${flags.limit}`);
  return value;
}

function money(amount: string | undefined, currency: string | undefined) {
  if (!currency || !isKnownCurrency(currency)) throw new UsageError(`not a currency Tally knows: ${currency}`);
  const minor = parseMoney(amount ?? "", currency);
  if (minor === undefined) throw new UsageError(`not an amount of ${currency}: ${amount}`);
  return create(MoneySchema, { amount: minor, currency });
}

/** One RPC through the gateway: which, with what, and as whom by default. */
interface Call {
  service: DescService;
  method: string;
  request: object;
  role: RoleName;
}

const teller = (service: DescService, method: string, request: object): Call => ({ service, method, request, role: "teller" });
const analyst = (method: string, request: object): Call => ({ service: RiskService, method, request, role: "analyst" });

/** A call made only to build another (its answer is not printed). */
type Read = (call: Call) => Promise<Record<string, any>>;

/** What each command calls, from its arguments (after the command's own words). */
const COMMANDS: Record<string, (args: string[], read: Read) => Call | Promise<Call>> = {
  "accounts open": ([customerId, currency]) => teller(AccountService, "createAccount", { requestId: requestId(), customerId, currency }),
  "accounts get": ([accountId]) => teller(AccountService, "getAccount", { accountId }),
  "accounts list": ([customerId]) => teller(AccountService, "listAccounts", { customerId }),
  "accounts freeze": ([accountId]) => teller(AccountService, "freezeAccount", { accountId, reason: flags.reason }),
  "accounts unfreeze": ([accountId]) => teller(AccountService, "unfreezeAccount", { accountId, reason: flags.reason }),
  balance: ([accountId]) => teller(AccountService, "getBalance", { accountId }),
  statement: ([accountId]) => teller(AccountService, "listEntries", { accountId, pageSize: limit(20) }),
  deposit: ([accountId, amount, currency]) => teller(TransactionService, "createDeposit", { requestId: requestId(), accountId, amount: money(amount, currency) }),
  withdraw: ([accountId, amount, currency]) => teller(TransactionService, "createWithdrawal", { requestId: requestId(), accountId, amount: money(amount, currency) }),
  transfer: ([fromAccountId, toAccountId, amount, currency]) =>
    teller(TransactionService, "createTransfer", { requestId: requestId(), fromAccountId, toAccountId, amount: money(amount, currency) }),
  "transfers get": ([transferId]) => teller(TransactionService, "getTransfer", { transferId }),
  "transfers list": ([accountId]) => teller(TransactionService, "listTransfers", { accountId, pageSize: limit(20) }),
  "transfers reverse": async ([transferId, amount, currency], read) => {
    const request = { requestId: requestId(), transferId, amount: 0n, reason: flags.reason };
    if (amount === undefined || transferId === undefined) return teller(TransactionService, "reverseTransfer", request);
    const given = money(amount, currency);
    // The request carries a bare amount, read in the transfer's currency: one given in another would be off by its scale.
    const { transfer } = await read(teller(TransactionService, "getTransfer", { transferId }));
    if (transfer.amount?.currency !== given.currency) throw new UsageError(`transfer ${transferId} moved ${transfer.amount?.currency}, not ${given.currency}`);
    return teller(TransactionService, "reverseTransfer", { ...request, amount: given.amount });
  },
  "reviews list": () => analyst("listReviews", { status: ReviewStatus.OPEN, accountId: flags.account, pageSize: limit(20) }),
  "reviews approve": ([reviewId]) => analyst("resolveReview", { reviewId, resolution: ReviewStatus.APPROVED, note: flags.note }),
  "reviews decline": ([reviewId]) => analyst("resolveReview", { reviewId, resolution: ReviewStatus.DECLINED, note: flags.note }),
};

/** The command named by the first one or two words, with the arguments after them. */
function command(words: string[]): { name: string; args: string[] } {
  for (const length of [2, 1]) {
    const name = words.slice(0, length).join(" ");
    if (COMMANDS[name] || name === "events tail" || name === "reconcile") return { name, args: words.slice(length) };
  }
  throw new UsageError(words.length ? `unknown command: ${words.join(" ")}` : "no command given");
}

/** One RPC through the gateway, with its answer and trace id. */
async function send({ service, method, request, role }: Call, config: ReturnType<typeof cliConfig>) {
  const url = flags.url ?? config.TALLY_URL;
  const token = config.TALLY_TOKEN ?? (await developmentToken(config.gateway(), (flags.as as RoleName | undefined) ?? role));
  const client = createClient(service, gatewayTransport(url, token)) as unknown as Record<string, (request: object, options: object) => Promise<MessageShape<DescMessage>>>;
  return traced((options) => client[method](request, options));
}

async function call(built: Call, config: ReturnType<typeof cliConfig>): Promise<void> {
  const { answer, traceId } = await send(built, config);
  const output = built.service.methods.find((m) => m.localName === built.method)!.output;
  process.stdout.write(`${toJsonString(output, answer, { prettySpaces: 2 })}\n`);
  process.stderr.write(`trace ${traceId}\n`);
}

async function main(): Promise<void> {
  if (flags.help) return void process.stdout.write(`${USAGE}\n`);
  const { name, args } = command(positionals);
  const config = cliConfig();
  if (name === "events tail") {
    return tailEvents({
      natsUrl: config.NATS_URL,
      stream: config.NATS_STREAM,
      subject: flags.subject,
      fromStart: flags["from-start"],
      limit: flags.limit === undefined ? undefined : limit(1),
      write: (line) => process.stdout.write(line),
    });
  }
  if (name === "reconcile") return reconcile(config.ACCOUNT_SERVICE_URL);
  const built = await COMMANDS[name](args, async (read) => (await send(read, config)).answer as Record<string, any>);
  const missing = Object.entries(built.request).find(([, v]) => v === undefined);
  if (missing) throw new UsageError(`${name}: ${missing[0]} is missing`);
  await call(built, config);
}

/** The ledger's own check of its invariants, printed; a breach found exits 1. */
async function reconcile(target: string): Promise<void> {
  const ledger = createServiceClient(LedgerService, target, { defaultTimeoutMs: 120_000 });
  try {
    const report = await ledger.reconcile({});
    process.stdout.write(`${toJsonString(ReconcileResponseSchema, report, { prettySpaces: 2 })}\n`);
    if (!report.balanced) {
      process.stderr.write(`the ledger is not balanced: ${report.breaches.length} breaches\n`);
      process.exitCode = 1;
    }
  } finally {
    ledger.close();
  }
}

main().catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  if (err instanceof ConnectError) {
    const reason = err.findDetails(ErrorInfoSchema)[0]?.reason;
    process.stderr.write(`${Code[err.code]}${reason ? ` ${reason}` : ""}: ${err.rawMessage}${err.metadata.get("x-trace-id") ? ` (trace ${err.metadata.get("x-trace-id")})` : ""}\n`);
    process.exit(1);
  }
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
