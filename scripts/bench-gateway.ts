/**
 * The gateway's cost: the bench:transfers workload (32 concurrent workers,
 * 2,000 funded accounts, fixed seed) sent three ways in the same run — straight
 * to the transactions service over gRPC, through the gateway over gRPC, and
 * through the gateway as REST JSON (POST /v1/transfers, /v1/transfers:batchCreate)
 * — for single transfers and for batches of 100. Each gateway figure is also
 * printed as a ratio to the direct one. Results go to bench-results/gateway.json.
 * It reports; it does not assert.
 *
 *   npm run bench:gateway
 *
 * Environment: BENCH_SECONDS (10) per scenario and path, BENCH_SEED (42).
 *
 * The gateway runs in this process beside the services and the client, as the
 * services do in bench:transfers, with a service token, so every call is
 * authenticated, rate-limited (with a limit too high to bite) and authorized.
 * All of them share one event loop: the ratio is what the gateway's work costs
 * the whole system on this machine.
 */
import { create, fromJson, toJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { Metadata } from "@grpc/grpc-js";
import postgres from "postgres";
import {
  BatchCreateTransfersRequestSchema,
  BatchCreateTransfersResponseSchema,
  CreateTransferRequestSchema,
  CreateTransferResponseSchema,
  TransactionService,
} from "../gen/tally/transactions/v1/transaction_service_pb";
import { createServiceClient, type ClientOf } from "../platform/grpc/client";
import { testLogger } from "../test/support/infra";
import { mintToken } from "../gateway/src/auth/tokens";
import { gatewayConfig } from "../gateway/src/config";
import { startGateway } from "../gateway/src/gateway";
import { machine, machineLine, postgresVersion, round2, runBench, writeResults, type BenchRun } from "./bench-support";
import { ACCOUNTS, CONCURRENCY, printTable, runScenario, settle, startStack, type Clients, type Scenario, type ScenarioResult, type Sql, type TransferApi } from "./transfer-workload";

const SHAPES: Omit<Scenario, "name">[] = [
  { batchSize: 1, hotCredit: false },
  { batchSize: 100, hotCredit: false },
];

/** REST JSON, as a browser or curl sends it: proto3 JSON in, proto3 JSON out. */
function restApi(base: string, token: string): TransferApi {
  const post = async <O extends DescMessage>(path: string, input: DescMessage, output: O, request: object) => {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-server-timeout": "60" },
      body: JSON.stringify(toJson(input, create(input, request as never))),
    });
    const body = (await res.json()) as JsonValue & { error?: { reason?: string } };
    if (!res.ok) throw new Error(`HTTP ${res.status}/${body.error?.reason ?? "?"}`);
    return fromJson(output, body);
  };
  return {
    createTransfer: (request) => post("/v1/transfers", CreateTransferRequestSchema, CreateTransferResponseSchema, request),
    batchCreateTransfers: (request) => post("/v1/transfers:batchCreate", BatchCreateTransfersRequestSchema, BatchCreateTransfersResponseSchema, request),
  };
}

async function main({ db, stream, lifecycle, seconds, seed, atEnd }: BenchRun): Promise<number> {
  let clients: Clients | undefined;
  let viaGateway: ClientOf<typeof TransactionService> | undefined;
  let sql: Sql | undefined;
  atEnd(async () => {
    clients && Object.values(clients).forEach((c) => c.close());
    viaGateway?.close();
    await sql?.end();
  });
  let ids: string[];
  let paths: [string, TransferApi][];
  try {
    const stack = await startStack(db, stream, lifecycle, {});
    ({ clients, ids } = stack);
    const config = gatewayConfig({
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: "0",
      LOG_LEVEL: "silent",
      ACCOUNT_SERVICE_URL: stack.targets.account,
      TRANSACTIONS_SERVICE_URL: stack.targets.transactions,
      RISK_SERVICE_URL: stack.targets.risk,
      // The direct client waits up to 60 s for a batch; so may the gateway's clients.
      MAX_DEADLINE_MS: "60000",
      RATE_LIMIT_PER_SECOND: "1000000000",
      RATE_LIMIT_BURST: "1000000000",
    });
    const gateway = await startGateway(config, testLogger(), lifecycle);
    const token = await mintToken({ secret: config.AUTH_HS256_SECRET!, issuer: config.AUTH_ISSUER, audience: config.AUTH_AUDIENCE, subject: "bench", roles: ["service"] });
    const grpcClient = createServiceClient(TransactionService, `127.0.0.1:${gateway.port}`, { defaultTimeoutMs: 60_000 });
    viaGateway = grpcClient;
    const auth = { metadata: new Metadata() };
    auth.metadata.set("authorization", `Bearer ${token}`);
    paths = [
      ["direct gRPC", clients.transactions],
      ["gateway gRPC", { createTransfer: (r) => grpcClient.createTransfer(r, auth), batchCreateTransfers: (r) => grpcClient.batchCreateTransfers(r, auth) }],
      ["gateway REST JSON", restApi(`http://127.0.0.1:${gateway.port}`, token)],
    ];
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
  } catch (err) {
    console.error(`setup failed: ${err instanceof Error ? err.stack : String(err)}`);
    return 1;
  }

  const results: (ScenarioResult & { path: string; ratioToDirect: number })[] = [];
  let index = 0;
  for (const shape of SHAPES) {
    let direct = 0;
    for (const [path, api] of paths) {
      const scenario = { ...shape, name: `${shape.batchSize === 1 ? "single" : `batch ${shape.batchSize}`}, ${path}` };
      await settle(sql);
      console.log(`running: ${scenario.name} (${seconds} s)`);
      // The same seed for every path: each sends the same transfers.
      const result = await runScenario(api, ids, scenario, index, seed, seconds, sql);
      if (path === "direct gRPC") direct = result.transfersPerSecond;
      results.push({ ...result, path, ratioToDirect: direct > 0 ? round2(result.transfersPerSecond / direct) : 0 });
    }
    index++;
  }

  const host = machine();
  const settings = { seconds, seed, concurrency: CONCURRENCY, accounts: ACCOUNTS, sharedProcess: true, postgres: await postgresVersion(sql) };
  console.log("");
  console.log(machineLine(host, settings.postgres));
  console.log(`settings: ${seconds} s per scenario, concurrency ${CONCURRENCY}, ${ACCOUNTS} accounts, seed ${seed}; client, gateway and services share this process.`);
  console.log("");
  printTable(results);
  console.log("");
  console.log("gateway cost, as posted transfers/s through the gateway ÷ straight to the service in the same run:");
  for (const r of results.filter((r) => r.path !== "direct gRPC")) console.log(`  ${r.name.padEnd(28)} ${r.ratioToDirect.toFixed(2)}×`);
  const file = writeResults("gateway", { finishedAt: new Date().toISOString(), machine: host, settings, scenarios: results });
  console.log(`results: ${file}`);
  return 0;
}

runBench(main);
