import { readFileSync } from "node:fs";
import path from "node:path";
import { gatewayEnv } from "../../gateway/src/config";
import { telemetryEnv } from "../../platform/config";
import { accountEnv } from "../../services/account/src/config";
import { riskEnv } from "../../services/risk/src/config";
import { transactionsEnv } from "../../services/transactions/src/config";

// Every variable a process reads is in the README's configuration table, and the table names no other.
const readme = readFileSync(path.resolve(__dirname, "../../README.md"), "utf8");
const table = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("## Layout"));
const documented = new Set([...table.matchAll(/^\| `([A-Z][A-Z0-9_]+)`(?:, `([A-Z][A-Z0-9_]+)`)? \|/gm)].flatMap((m) => [m[1], m[2]]).filter(Boolean));
const read = new Set([accountEnv({}), transactionsEnv({}), riskEnv({}), gatewayEnv({}), telemetryEnv(0)].flatMap((shape) => Object.keys(shape)));
// Read by the scripts and tools rather than the processes, or by the OpenTelemetry SDK itself.
const elsewhere = ["TALLY_ENV", "REPLICAS", "PORT_OFFSET", "TALLY_DATA_DIR", "TALLY_URL", "TALLY_TOKEN", "JAEGER_URL", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE"];

it("documents every variable the processes read", () => {
  expect([...read].filter((name) => !documented.has(name))).toEqual([]);
});

it("documents no variable that nothing reads", () => {
  expect([...documented].filter((name) => !read.has(name) && !elsewhere.includes(name))).toEqual([]);
});
