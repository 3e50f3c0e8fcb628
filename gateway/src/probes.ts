import type { IncomingMessage } from "node:http";
import type { JsonObject } from "@bufbuild/protobuf";
import { checkHealth } from "../../platform/grpc/health-check";
import { addressesOf } from "../../platform/grpc/target";
import type { Logger } from "../../platform/logger";
import type { GatewayConfig } from "./config";
import { sendJson, type Response } from "./rest";

/** Each service the gateway forwards to, with its replicas' addresses. */
export const backendGroups = (config: GatewayConfig): Record<string, string[]> => ({
  account: addressesOf(config.ACCOUNT_SERVICE_URL),
  transactions: addressesOf(config.TRANSACTIONS_SERVICE_URL),
  risk: addressesOf(config.RISK_SERVICE_URL),
});

type Handler<Req, Res> = (req: Req, res: Res) => unknown;

type Readiness = { ready: boolean; backends: Record<string, { replicas: number; serving: number }> };

// A readiness answer stands this long: a flood of /readyz (it needs no token) costs one round of checks a second, not one each.
const READINESS_FRESH_MS = 1000;

/**
 * /healthz: the gateway process answers. /readyz: every service it forwards to
 * has at least one replica reporting SERVING on grpc.health.v1, so traffic sent
 * here can be served; the body counts each service's replicas and those serving
 * (which ones are not goes to the log, not to whoever asks). Neither needs a
 * token. Anything else goes on to `next`.
 */
export function probes<Req extends Pick<IncomingMessage, "url" | "method">, Res>(
  groups: Record<string, string[]>,
  log: Logger,
  next: Handler<Req, Res>,
): Handler<Req, Res> {
  const answer = (res: Res, status: number, body: JsonObject) => sendJson(res as unknown as Response, status, body);
  let last: { at: number; readiness: Promise<Readiness> } | undefined;
  const check = async (): Promise<Readiness> => {
    const addresses = Object.values(groups).flat();
    const serving = new Map(await Promise.all(addresses.map(async (a) => [a, await checkHealth(a, "", 1000)] as const)));
    const down = addresses.filter((a) => !serving.get(a));
    if (down.length > 0) log.warn({ notServing: down }, "backend replicas not serving");
    return {
      ready: Object.values(groups).every((replicas) => replicas.some((a) => serving.get(a))),
      backends: Object.fromEntries(Object.entries(groups).map(([name, replicas]) => [name, { replicas: replicas.length, serving: replicas.filter((a) => serving.get(a)).length }])),
    };
  };
  return async (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && path === "/healthz") return answer(res, 200, { status: "ok" });
    if (req.method === "GET" && path === "/readyz") {
      if (!last || performance.now() - last.at > READINESS_FRESH_MS) last = { at: performance.now(), readiness: check() };
      const { ready, backends } = await last.readiness;
      return answer(res, ready ? 200 : 503, { status: ready ? "ready" : "not ready", backends });
    }
    return next(req, res);
  };
}
