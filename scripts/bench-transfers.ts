/**
 * Transfer throughput: CreateTransfer through the three services at
 * concurrency 32, uniform over 2,000 accounts and with one hot credit account,
 * then BatchCreateTransfers with 100 items per request. Every transfer is a
 * new request (its own request id), assessed by risk and posted by the ledger,
 * so this measures the whole path a client's transfer takes. Prints posted
 * transfers/s, requests/s, request latency and the status mix for each
 * scenario, and writes them to bench-results/transfers.json. It reports; it
 * does not assert.
 *
 *   npm run bench:transfers
 *
 * Environment: BENCH_SECONDS (10) per scenario, BENCH_SEED (42) for the
 * generated traffic, DATABASE_POOL_SIZE for all three services (their own
 * default if unset).
 *
 * The account, risk and transactions services run in this process, as in the
 * transactions tests: one fresh database and a private stream, free ports,
 * real grpc-js clients; every other setting is the services' own default, as
 * in production. The client and all three services therefore share one event
 * loop; the numbers are for comparing runs on the same machine, not a
 * capacity figure.
 *
 * Amounts are 0.01 to 5.00, below every amount threshold of the shipped risk
 * rules, so a transfer is held only when risk sends it to review for another
 * reason (the velocity rule: 10 transfers from one account within a minute,
 * 100 within an hour), or when risk did not answer within the transactions
 * service's deadline and the fallback policy held it.
 */
import postgres from "postgres";
import { machine, machineLine, postgresVersion, runBench, writeResults, type BenchRun } from "./bench-support";
import { ACCOUNTS, CONCURRENCY, MAX_AMOUNT, printTable, runScenario, settle, startStack, type Clients, type Scenario, type ScenarioResult, type Sql, type Stack } from "./transfer-workload";

const SCENARIOS: Scenario[] = [
  { name: "single, uniform", batchSize: 1, hotCredit: false },
  { name: "single, hot credit", batchSize: 1, hotCredit: true },
  { name: "batch 100, uniform", batchSize: 100, hotCredit: false },
];

// --- main ----------------------------------------------------------------

async function main({ db, stream, lifecycle, seconds, seed, extraEnv, atEnd }: BenchRun): Promise<number> {
  let clients: Clients | undefined;
  let sql: Sql | undefined;
  atEnd(async () => {
    for (const client of Object.values(clients ?? {})) client.close();
    await sql?.end();
  });
  // Setup: any failure here is the bench's own, and exits non-zero.
  let ids: string[];
  let pools: Stack["pools"];
  let transactionsSettings: Stack["transactionsSettings"];
  try {
    ({ clients, ids, pools, transactionsSettings } = await startStack(db, stream, lifecycle, extraEnv));
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
  } catch (err) {
    console.error(`setup failed: ${err instanceof Error ? err.stack : String(err)}`);
    return 1;
  }

  const results: ScenarioResult[] = [];
  for (const [index, scenario] of SCENARIOS.entries()) {
    await settle(sql);
    console.log(`running: ${scenario.name} (${seconds} s)`);
    results.push(await runScenario(clients.transactions, ids, scenario, index, seed, seconds, sql));
  }

  const host = machine();
  const settings = {
    seconds,
    seed,
    concurrency: CONCURRENCY,
    accounts: ACCOUNTS,
    amountMinorUnits: { min: 1, max: MAX_AMOUNT },
    databasePoolSize: pools,
    transactions: transactionsSettings,
    sharedProcess: true,
    postgres: await postgresVersion(sql),
  };
  console.log("");
  console.log(machineLine(host, settings.postgres));
  console.log(
    `settings: ${seconds} s per scenario, concurrency ${CONCURRENCY}, ${ACCOUNTS} accounts, amounts 1..${MAX_AMOUNT} minor units, seed ${seed}, ` +
      `service pools account ${pools.account} / risk ${pools.risk} / transactions ${pools.transactions}, ` +
      `risk deadline ${transactionsSettings.riskDeadlineMs} ms (fallback: ${transactionsSettings.riskFallback})`,
  );
  console.log("note: the client and all three services share this one process and its event loop; compare runs on one machine, not capacity.");
  console.log("");
  printTable(results);
  console.log("");
  console.log("wall s: from the start until the last request in flight at the deadline answered; the rates are over it.");
  console.log("transfers/s: posted transfers per second. latency: per request (a batch request carries 100 transfers).");
  console.log("unsettled: transfers still between steps at the end. outbox a/r/t: unpublished events of account / risk / transactions.");
  const file = writeResults("transfers", { finishedAt: new Date().toISOString(), machine: host, settings, scenarios: results });
  console.log(`results: ${file}`);
  return 0;
}

runBench(main);
