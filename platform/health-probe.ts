// A container's health check, with nothing to install in the image:
//   node dist/platform/health-probe.js grpc 127.0.0.1:50051     (grpc.health.v1 reports SERVING)
//   node dist/platform/health-probe.js http http://127.0.0.1:8080/readyz   (answers 2xx)
// Exits 0 when healthy, 1 when not, 2 when called wrongly.
import { checkHealth } from "./grpc/health-check";
import { answersOk } from "./http-probe";

const TIMEOUT_MS = 2000;

async function healthy(kind: string | undefined, target: string | undefined): Promise<boolean> {
  if (kind === "grpc" && target) return checkHealth(target, "", TIMEOUT_MS);
  if (kind === "http" && target) return answersOk(target, TIMEOUT_MS);
  process.stderr.write("usage: health-probe grpc <host:port> | http <url>\n");
  process.exit(2);
}

healthy(process.argv[2], process.argv[3]).then(
  (ok) => process.exit(ok ? 0 : 1),
  (err: unknown) => {
    process.stderr.write(`unhealthy: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
