// `npm run tally -- <command>`: Tally for operators, through the gateway with the generated Connect
// clients. Answers are printed as proto3 JSON on stdout, and each call's trace id on stderr.
import { parseArgs } from "node:util";
import { create, toJsonString, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { MoneySchema } from "../gen/tally/common/v1/money_pb";
import { ReviewStatus } from "../gen/tally/risk/v1/risk_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../gen/tally/transactions/v1/transaction_service_pb";
import type { RoleName } from "../gateway/src/auth/principal";
import { developmentToken } from "../gateway/src/auth/tokens";
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

The gateway is TALLY_URL (http://127.0.0.1:8080). The token is TALLY_TOKEN, or a development token
minted for the role (--as; teller, or analyst for reviews). Creates carry a new request id, or
--request-id to retry one safely. events tail reads JetStream at NATS_URL, stream NATS_STREAM.`;

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

/** What each command calls, from its arguments (after the command's own words). */
const COMMANDS: Record<string, (args: string[]) => Call> = {
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
  "transfers reverse": ([transferId, amount, currency]) =>
    teller(TransactionService, "reverseTransfer", { requestId: requestId(), transferId, amount: amount === undefined ? 0n : money(amount, currency).amount, reason: flags.reason }),
  "reviews list": () => analyst("listReviews", { status: ReviewStatus.OPEN, accountId: flags.account, pageSize: limit(20) }),
  "reviews approve": ([reviewId]) => analyst("resolveReview", { reviewId, resolution: ReviewStatus.APPROVED, note: flags.note }),
  "reviews decline": ([reviewId]) => analyst("resolveReview", { reviewId, resolution: ReviewStatus.DECLINED, note: flags.note }),
};

/** The command named by the first one or two words, with the arguments after them. */
function command(words: string[]): { name: string; args: string[] } {
  for (const length of [2, 1]) {
    const name = words.slice(0, length).join(" ");
    if (COMMANDS[name] || name === "events tail") return { name, args: words.slice(length) };
  }
  throw new UsageError(words.length ? `unknown command: ${words.join(" ")}` : "no command given");
}

async function call({ service, method, request, role }: Call, config: ReturnType<typeof cliConfig>): Promise<void> {
  const url = flags.url ?? config.TALLY_URL;
  const token = config.TALLY_TOKEN ?? (await developmentToken(config.gateway(), (flags.as as RoleName | undefined) ?? role));
  const client = createClient(service, gatewayTransport(url, token)) as unknown as Record<string, (request: object, options: object) => Promise<MessageShape<DescMessage>>>;
  const output = service.methods.find((m) => m.localName === method)!.output;
  const { answer, traceId } = await traced((options) => client[method](request, options));
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
  const built = COMMANDS[name](args);
  const missing = Object.entries(built.request).find(([, v]) => v === undefined);
  if (missing) throw new UsageError(`${name}: ${missing[0]} is missing`);
  await call(built, config);
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
