import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import postgres from "postgres";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { newId } from "../../platform/ids";
import { eventually } from "../support/events";
import { TEST_NATS_URL } from "../support/infra";
import { KIND, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../support/otlp";
import { startSystem, type ProcessName, type System } from "../support/system";

/**
 * One transfer, one trace: the whole system as real processes exporting to an
 * OTLP receiver in this test. Each transfer made through the gateway must be
 * one trace that covers the gateway, transactions, risk, account and their
 * database work, the event published from the outbox and the consumers that
 * reacted to it, every span linked to its parent. Logs carry the trace, and
 * each process's /metrics counts what happened.
 */
let system: System;
let otlp: OtlpReceiver;
let teller: string;
let analyst: string;
let prefix: string;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  system = await startSystem({
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
    OTEL_BSP_SCHEDULE_DELAY: "50",
    LOG_LEVEL: "debug",
    // Processes started from source are slow to warm up: do not let risk's deadline decide for it.
    RISK_DEADLINE_MS: "5000",
  });
  prefix = system.stream.subjectPrefix;
  [teller, analyst] = await Promise.all([system.token("teller"), system.token("analyst")]);
}, 150_000);

afterAll(async () => {
  await system?.stop();
  await otlp?.close();
});

interface Answer {
  status: number;
  traceId: string;
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function rest(token: string, method: "GET" | "POST", path: string, body?: object, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${system.gatewayUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, traceId: res.headers.get("x-trace-id") ?? "", body: (await res.json()) as Answer["body"] };
}

const usd = (minor: number) => ({ amount: String(minor), currency: "USD" });

async function openFundedAccounts(): Promise<[string, string]> {
  const customerId = `trace-${newId().slice(-8)}`;
  const [a, b] = await Promise.all(
    [0, 1].map(async () => (await rest(teller, "POST", "/v1/accounts", { requestId: newId(), customerId, currency: "USD" })).body.account.id as string),
  );
  const deposit = await rest(teller, "POST", "/v1/deposits", { requestId: newId(), accountId: a, amount: usd(900_000) });
  expect(deposit.body.transfer?.status).toBe("TRANSFER_STATUS_POSTED");
  return [a, b];
}

/** A trace's spans with the means to walk it. */
function traceTree(spans: ReceivedSpan[]) {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const isUnder = (span: ReceivedSpan, ancestor: ReceivedSpan): boolean => {
    for (let p = byId.get(span.parentSpanId); p; p = byId.get(p.parentSpanId)) if (p.spanId === ancestor.spanId) return true;
    return false;
  };
  const find = (what: string, match: (s: ReceivedSpan) => boolean): ReceivedSpan => {
    const found = spans.filter(match);
    if (found.length === 0) throw new Error(`no ${what} in the trace: ${spans.map((s) => `${s.service}:${s.name}`).join(", ")}`);
    return found[0];
  };
  /** The server span of an RPC in a service (the gateway's is named after the method; grpc-js's carry the method too). */
  const server = (service: ProcessName, method: string) =>
    find(`${service} server span of ${method}`, (s) => s.service === service && s.kind === KIND.SERVER && s.name.endsWith(method));
  const client = (service: ProcessName, method: string) =>
    find(`${service} client span of ${method}`, (s) => s.service === service && s.kind === KIND.CLIENT && s.name.endsWith(method));
  const orphans = spans.filter((s) => s.parentSpanId !== "" && !byId.has(s.parentSpanId));
  const roots = spans.filter((s) => s.parentSpanId === "");
  return { spans, byId, isUnder, find, server, client, orphans, roots };
}

type Tree = ReturnType<typeof traceTree>;

/** Waits until the trace holds what `check` looks for and no span's parent is missing. */
async function completeTrace(traceId: string, check: (tree: Tree) => void): Promise<Tree> {
  let last: unknown;
  try {
    return await eventually(async () => {
      const tree = traceTree(otlp.trace(traceId));
      try {
        check(tree);
        if (tree.orphans.length > 0) throw new Error(`orphans: ${tree.orphans.map((s) => `${s.service}:${s.name}`).join(", ")}`);
        return tree;
      } catch (err) {
        last = err;
        return undefined;
      }
    }, 30_000);
  } catch {
    throw last instanceof Error ? last : new Error(String(last));
  }
}

/** Asserts that `child`'s parent is exactly `parent`. */
function expectParent(child: ReceivedSpan, parent: ReceivedSpan): void {
  expect({ child: child.name, parent: child.parentSpanId }).toEqual({ child: child.name, parent: parent.spanId });
}

/** Every database span of a service under one of its spans. */
function expectDatabaseWork(tree: Tree, under: ReceivedSpan): void {
  const queries = tree.spans.filter((s) => s.service === under.service && s.attributes["db.system.name"] === "postgresql" && tree.isUnder(s, under));
  expect(queries.length).toBeGreaterThan(0);
  expect(queries.every((q) => q.kind === KIND.CLIENT)).toBe(true);
}

describe("one transfer, one trace", () => {
  it("follows a transfer that posts from the gateway through transactions, risk and account, the outbox and the risk consumer", async () => {
    const [from, to] = await openFundedAccounts();
    // Baggage a caller sends is not carried into the system: only the trace context is.
    const baggage = { baggage: "tenant=someone-else,role=admin" };
    const created = await rest(teller, "POST", "/v1/transfers", { requestId: newId(), fromAccountId: from, toAccountId: to, amount: usd(5_000) }, baggage);
    expect(created.status).toBe(200);
    expect(created.body.transfer.status).toBe("TRANSFER_STATUS_POSTED");
    expect(created.traceId).toMatch(/^[0-9a-f]{32}$/);
    const transferId = created.body.transfer.id as string;
    const posted = `${prefix}.account.transfers_posted`;

    const tree = await completeTrace(created.traceId, (t) => {
      t.find("the risk consumer", (s) => s.service === "risk" && s.kind === KIND.CONSUMER && s.name === `${posted} process`);
    });

    // The gateway's server span is the root, named after the method, with the protocol and the status.
    const gateway = tree.server("gateway", "tally.transactions.v1.TransactionService/CreateTransfer");
    expect(tree.roots).toEqual([gateway]);
    expect(gateway.attributes).toMatchObject({ "tally.protocol": "rest", "http.response.status_code": 200, "http.request.method": "POST" });

    // gateway → transactions: a grpc-js client span, then the service's server span.
    const toTransactions = tree.client("gateway", "TransactionService/CreateTransfer");
    expectParent(toTransactions, gateway);
    const transactions = tree.server("transactions", "TransactionService/CreateTransfer");
    expectParent(transactions, toTransactions);
    expect(transactions.attributes).toMatchObject({ "tally.transfer.id": transferId, "tally.amount": "5000", "tally.currency": "USD", "tally.account.from_id": from });
    expectDatabaseWork(tree, transactions);

    // transactions → risk: the decision, and the rules behind it.
    const toRisk = tree.client("transactions", "RiskService/AssessTransfers");
    expect(tree.isUnder(toRisk, transactions)).toBe(true);
    const risk = tree.server("risk", "RiskService/AssessTransfers");
    expectParent(risk, toRisk);
    expect(risk.attributes).toMatchObject({ "tally.risk.decision": "approve", "tally.transfer.id": transferId });
    expectDatabaseWork(tree, risk);

    // transactions → account's ledger: the posting, with its result.
    const toLedger = tree.client("transactions", "LedgerService/PostTransfers");
    expect(tree.isUnder(toLedger, transactions)).toBe(true);
    const ledger = tree.server("account", "LedgerService/PostTransfers");
    expectParent(ledger, toLedger);
    const posting = ledger.events.find((e) => e.name === "transfer posted");
    expect(posting?.attributes).toMatchObject({ "tally.transfer.id": transferId, "tally.amount": "5000", "tally.ledger.result": "OK" });
    expectDatabaseWork(tree, ledger);

    // The ledger's event leaves through the outbox: the relay's publish continues the posting's context…
    const publish = tree.find("the relay's publish", (s) => s.service === "account" && s.kind === KIND.PRODUCER && s.name === `${posted} publish`);
    expect(tree.isUnder(publish, ledger)).toBe(true);
    // …and each consumer's processing is the publish's child.
    const riskConsumer = tree.find("the risk consumer", (s) => s.service === "risk" && s.kind === KIND.CONSUMER && s.name === `${posted} process`);
    expectParent(riskConsumer, publish);
    expect(riskConsumer.attributes["messaging.consumer.group.name"]).toBeTruthy();
    expectDatabaseWork(tree, riskConsumer);

    // Every process took part, all under the one root.
    expect(new Set(tree.spans.map((s) => s.service))).toEqual(new Set(["gateway", "transactions", "risk", "account"]));

    // What the outbox kept for the relay: the trace context, and no baggage.
    const sql = postgres(system.database.url, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ headers: Record<string, string> }[]>`select headers from account.outbox where headers->>'traceparent' like ${`%${created.traceId}%`}`;
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(Object.keys(row.headers).filter((k) => k !== "tracestate")).toEqual(["traceparent"]);
    } finally {
      await sql.end();
    }
  });

  it("keeps each transfer's event in its own trace when concurrent transfers commit together, and leads from each to the statements that stored it", async () => {
    // Five from each of four accounts: fewer than the shipped velocity rule sends to review.
    const pairs = await Promise.all(Array.from({ length: 4 }, () => openFundedAccounts()));
    const sent = await Promise.all(
      Array.from({ length: 20 }, (_, i) => rest(teller, "POST", "/v1/transfers", { requestId: newId(), fromAccountId: pairs[i % 4][0], toAccountId: pairs[i % 4][1], amount: usd(100) })),
    );
    expect(sent.map((s) => s.body.transfer?.status)).toEqual(sent.map(() => "TRANSFER_STATUS_POSTED"));
    expect(new Set(sent.map((s) => s.traceId)).size).toBe(20);
    const published = `${prefix}.transactions.transfer_posted publish`;
    const trees = await Promise.all(sent.map(({ traceId }) => completeTrace(traceId, (t) => t.find("the relay's publish of transfer_posted", (s) => s.service === "transactions" && s.name === published))));
    for (const tree of trees) {
      // Its own event, published once, under its own request: not another transfer's, nor a second copy.
      const publishes = tree.spans.filter((s) => s.service === "transactions" && s.name === published);
      expect(publishes).toHaveLength(1);
      expect(tree.isUnder(publishes[0], tree.server("transactions", "TransactionService/CreateTransfer"))).toBe(true);
    }
    // Risk's decision of each, in its own trace or in a call shared with others that its trace links to.
    for (const [i, tree] of trees.entries()) {
      const transferId = sent[i].body.transfer!.id as string;
      const riskServer = (s: ReceivedSpan) => s.service === "risk" && s.kind === KIND.SERVER && s.name.endsWith("RiskService/AssessTransfers");
      const shared = tree.spans.find((s) => s.service === "transactions" && s.scope === "tally.batch" && s.name === "RiskService/AssessTransfers");
      let decided: ReceivedSpan;
      if (shared) {
        expect(shared.links).toHaveLength(1);
        const call = await completeTrace(shared.links[0].traceId, (t) => t.find("the shared call's risk span", riskServer));
        const batch = call.spans.find((s) => s.spanId === shared.links[0].spanId)!;
        decided = call.spans.find((s) => riskServer(s) && call.isUnder(s, batch))!;
      } else decided = tree.find("risk's server span", riskServer);
      const named = [decided.attributes["tally.transfer.id"], ...decided.events.map((e) => e.attributes["tally.transfer.id"])];
      expect(named).toContain(transferId);
    }
    // Its record, its saves and its answer: statements in its own trace, or in a transaction shared with others that its trace links to.
    let linked = 0;
    for (const tree of trees) {
      for (const [group, statement] of [
        ["record transfers", "INSERT transactions.transfers"],
        ["save transfers", "UPDATE transactions.transfers"],
        ["store answers", "UPDATE transactions.idempotency_keys"],
      ]) {
        const own = tree.spans.filter((s) => s.service === "transactions" && s.name === statement);
        // A transaction shared with others is named by an event on the request's span: its trace and span.
        const shared = tree.spans.filter((s) => s.service === "transactions").flatMap((s) => s.events.filter((e) => e.name === group));
        expect({ group, found: own.length + shared.length > 0 }).toEqual({ group, found: true });
        for (const { attributes } of shared) {
          const [traceId, spanId] = [String(attributes["tally.batch.trace_id"]), String(attributes["tally.batch.span_id"])];
          const commit = await completeTrace(traceId, (t) => t.find(`the shared ${group}`, (s) => s.spanId === spanId));
          expect(commit.spans.some((s) => s.name === statement && commit.isUnder(s, commit.byId.get(spanId)!))).toBe(true);
          linked++;
        }
      }
    }
    // Twenty at once: some shared a transaction.
    expect(linked).toBeGreaterThan(0);
  }, 90_000);

  it("follows a transfer sent to review, then the analyst's approval through the events that post it", async () => {
    const [from, to] = await openFundedAccounts();
    // A young account sending 2,000.00: the default rules send it to review.
    const created = await rest(teller, "POST", "/v1/transfers", { requestId: newId(), fromAccountId: from, toAccountId: to, amount: usd(200_000) });
    expect(created.status).toBe(200);
    expect(created.body.transfer.risk.decision).toBe("RISK_DECISION_REVIEW");
    const opened = `${prefix}.risk.review_opened`;

    const review = await completeTrace(created.traceId, (t) => {
      t.find("risk's publish", (s) => s.service === "risk" && s.kind === KIND.PRODUCER && s.name === `${opened} publish`);
    });
    const gateway = review.server("gateway", "TransactionService/CreateTransfer");
    expect(review.roots).toEqual([gateway]);
    const transactions = review.server("transactions", "TransactionService/CreateTransfer");
    expect(review.isUnder(transactions, gateway)).toBe(true);
    const risk = review.server("risk", "RiskService/AssessTransfers");
    expect(review.isUnder(risk, transactions)).toBe(true);
    expect(risk.attributes["tally.risk.decision"]).toBe("review");
    const fired = risk.events.filter((e) => e.name === "rule fired").map((e) => e.attributes["tally.risk.rule.name"]);
    expect(fired).toContain("young account, large amount");
    // Transactions asks account about the accounts first.
    const account = review.server("account", "AccountService/LookupAccounts");
    expect(review.isUnder(account, transactions)).toBe(true);
    const publish = review.find("risk's publish", (s) => s.service === "risk" && s.kind === KIND.PRODUCER && s.name === `${opened} publish`);
    expect(review.isUnder(publish, risk)).toBe(true);

    // The approval is a trace of its own that carries on, through events, to the posting and what follows it.
    const reviews = await rest(analyst, "GET", `/v1/reviews?accountId=${from}`);
    const reviewId = reviews.body.reviews[0].id as string;
    const resolved = await rest(analyst, "POST", `/v1/reviews/${reviewId}:resolve`, { resolution: "REVIEW_STATUS_APPROVED", note: "known customer" });
    expect(resolved.status).toBe(200);
    const posted = `${prefix}.account.transfers_posted`;
    const approval = await completeTrace(resolved.traceId, (t) => {
      t.find("the risk consumer", (s) => s.service === "risk" && s.kind === KIND.CONSUMER && s.name === `${posted} process`);
    });
    const resolve = approval.server("gateway", "RiskService/ResolveReview");
    expect(approval.roots).toEqual([resolve]);
    const riskResolve = approval.server("risk", "RiskService/ResolveReview");
    const resolvedPublish = approval.find("risk's publish", (s) => s.kind === KIND.PRODUCER && s.name === `${prefix}.risk.review_resolved publish`);
    expect(approval.isUnder(resolvedPublish, riskResolve)).toBe(true);
    const transactionsConsumer = approval.find(
      "the transactions consumer",
      (s) => s.service === "transactions" && s.kind === KIND.CONSUMER && s.name === `${prefix}.risk.review_resolved process`,
    );
    expectParent(transactionsConsumer, resolvedPublish);
    const ledger = approval.server("account", "LedgerService/PostTransfers");
    expect(approval.isUnder(ledger, transactionsConsumer)).toBe(true);
    // Capturing the hold may take more than one posting: each one's event is published under it and consumed under that.
    const postedPublishes = approval.spans.filter((s) => s.kind === KIND.PRODUCER && s.name === `${posted} publish`);
    expect(postedPublishes.length).toBeGreaterThan(0);
    for (const publish of postedPublishes) expect(approval.isUnder(publish, transactionsConsumer)).toBe(true);
    const riskConsumers = approval.spans.filter((s) => s.service === "risk" && s.kind === KIND.CONSUMER && s.name === `${posted} process`);
    expect(riskConsumers.length).toBeGreaterThan(0);
    for (const consumer of riskConsumers) expect(postedPublishes.map((p) => p.spanId)).toContain(consumer.parentSpanId);
  });

  it("names the trace of every response, on gRPC as on REST, and starts none for probes", async () => {
    let traceId = "";
    const client = createClient(
      AccountService,
      createGrpcTransport({ baseUrl: system.gatewayUrl, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${teller}`), next(req))] }),
    );
    await client.getSystemAccount({ currency: "USD" }, { onHeader: (h) => (traceId = h.get("x-trace-id") ?? "") });
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    const tree = await completeTrace(traceId, (t) => void t.server("account", "AccountService/GetSystemAccount"));
    expect(tree.server("gateway", "AccountService/GetSystemAccount").attributes["tally.protocol"]).toBe("grpc");

    // A caller's own trace context is continued, not replaced.
    const callerTrace = newId().replace(/-/g, "");
    const res = await fetch(`${system.gatewayUrl}/v1/system-accounts/USD`, {
      headers: { authorization: `Bearer ${teller}`, traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-trace-id")).toBe(callerTrace);
    const continued = await eventually(async () => otlp.trace(callerTrace).find((s) => s.service === "gateway" && s.kind === KIND.SERVER), 15_000);
    expect(continued.parentSpanId).toBe("00f067aa0ba902b7");

    const probe = await fetch(`${system.gatewayUrl}/healthz`);
    expect(probe.headers.get("x-trace-id")).toBeNull();
  });
});

describe("logs", () => {
  it("carry the trace and span of the request or message they were written in, in every process", async () => {
    const [from, to] = await openFundedAccounts();
    const created = await rest(teller, "POST", "/v1/transfers", { requestId: newId(), fromAccountId: from, toAccountId: to, amount: usd(1_000) });
    const tree = await completeTrace(created.traceId, (t) => {
      t.find("the risk consumer", (s) => s.service === "risk" && s.kind === KIND.CONSUMER);
    });
    for (const name of ["gateway", "transactions", "risk", "account"] as ProcessName[]) {
      const lines = system.processes[name].logs();
      expect(lines.filter((l) => l.unparsed !== undefined)).toEqual([]);
      const inTrace = lines.filter((l) => l.trace_id === created.traceId);
      expect({ name, lines: inTrace.length > 0 }).toEqual({ name, lines: true });
      // Each names a span of this trace that the same process made.
      for (const line of inTrace) expect(tree.byId.get(line.span_id as string)?.service).toBe(name);
    }
    // Inside a message too: the risk consumer's line names its processing span.
    const handled = system.processes.risk.logs().find((l) => l.trace_id === created.traceId && l.msg === "event handled");
    expect(tree.byId.get(handled?.span_id as string)?.kind).toBe(KIND.CONSUMER);
    // No line names a trace without a span.
    for (const name of Object.keys(system.processes) as ProcessName[]) {
      expect(system.processes[name].logs().filter((l) => (l.trace_id === undefined) !== (l.span_id === undefined))).toEqual([]);
    }
  });
});

/** The sum of a metric's samples whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const has = Object.entries(labels).every(([k, v]) => (m[2] ?? "").includes(`${k}="${v}"`));
    if (has) total = (total ?? 0) + Number(m[3]);
  }
  return total;
}

describe("metrics", () => {
  it("serve per process on Prometheus's format: RPCs, errors, outbox, consumers, ledger batches and risk decisions", async () => {
    const [from, to] = await openFundedAccounts();
    await rest(teller, "POST", "/v1/transfers", { requestId: newId(), fromAccountId: from, toAccountId: to, amount: usd(2_500) });
    const missing = await rest(teller, "GET", `/v1/accounts/${newId()}`);
    expect(missing.status).toBe(404);

    // A message that is no event at all, on a subject the risk consumer reads.
    const nc = await connect({ servers: TEST_NATS_URL });
    await jetstream(nc).publish(`${prefix}.account.garbage`, new Uint8Array([0xff, 0x01, 0x02]));
    await nc.close();

    const metrics = async () => Object.fromEntries(await Promise.all((["gateway", "transactions", "risk", "account"] as ProcessName[]).map(async (n) => [n, await system.metrics(n)] as const)));
    const m = await eventually(async () => {
      const all = await metrics();
      return (sample(all.risk, "messaging_consumer_poison_messages_total") ?? 0) >= 1 && (sample(all.transactions, "outbox_publish_lag_count") ?? 0) >= 1 ? all : undefined;
    }, 20_000);

    const createTransfer = { rpc_method: "tally.transactions.v1.TransactionService/CreateTransfer" };
    // Requests and duration per RPC, at the gateway (by protocol) and at the service.
    expect(sample(m.gateway, "rpc_server_call_duration_count", { ...createTransfer, tally_protocol: "rest", rpc_response_status_code: "OK" })).toBeGreaterThanOrEqual(1);
    expect(sample(m.transactions, "rpc_server_call_duration_count", { ...createTransfer, rpc_response_status_code: "OK" })).toBeGreaterThanOrEqual(1);
    expect(sample(m.transactions, "rpc_server_call_duration_bucket", { ...createTransfer, le: "+Inf" })).toBeGreaterThanOrEqual(1);
    // Errors, with the reason.
    const getAccount = { rpc_method: "tally.account.v1.AccountService/GetAccount", error_type: "ACCOUNT_NOT_FOUND" };
    expect(sample(m.gateway, "rpc_server_errors_total", { ...getAccount, rpc_response_status_code: "NOT_FOUND" })).toBeGreaterThanOrEqual(1);
    expect(sample(m.account, "rpc_server_errors_total", getAccount)).toBeGreaterThanOrEqual(1);
    // The outbox: what waits and how long publishing took.
    for (const name of ["account", "transactions", "risk"] as ProcessName[]) {
      expect(sample(m[name], "outbox_backlog", { outbox: name })).toBeGreaterThanOrEqual(0);
      // Nothing set aside: every event the services wrote, the stream took.
      expect(sample(m[name], "outbox_parked", { outbox: name })).toBe(0);
    }
    expect(sample(m.account, "outbox_publish_lag_count", { outbox: "account" })).toBeGreaterThanOrEqual(1);
    // Consumers: lag, messages by outcome, poison messages.
    expect(sample(m.risk, "messaging_consumer_lag")).toBeGreaterThanOrEqual(0);
    expect(sample(m.transactions, "messaging_consumer_lag")).toBeGreaterThanOrEqual(0);
    expect(sample(m.risk, "messaging_consumer_messages_total", { outcome: "processed" })).toBeGreaterThanOrEqual(1);
    expect(sample(m.risk, "messaging_consumer_poison_messages_total")).toBe(1);
    // The ledger's batches and risk's decisions.
    expect(sample(m.account, "ledger_batch_size_count")).toBeGreaterThanOrEqual(2);
    expect(sample(m.risk, "risk_decisions_total", { decision: "approve" })).toBeGreaterThanOrEqual(2);
  });
});
