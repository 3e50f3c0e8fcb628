import type { IncomingMessage } from "node:http";
import type { JsonObject } from "@bufbuild/protobuf";
import { checkHealth } from "../../platform/grpc/health-check";
import type { GatewayConfig } from "./config";
import { sendJson, type Response } from "./rest";

export const backendTargets = (config: GatewayConfig): string[] => [config.ACCOUNT_SERVICE_URL, config.TRANSACTIONS_SERVICE_URL, config.RISK_SERVICE_URL];

type Handler<Req, Res> = (req: Req, res: Res) => unknown;

/**
 * /healthz: the gateway process answers. /readyz: every service it forwards to
 * reports SERVING on grpc.health.v1, so traffic sent here can be served.
 * Anything else goes on to `next`.
 */
export function probes<Req extends Pick<IncomingMessage, "url" | "method">, Res>(targets: string[], next: Handler<Req, Res>): Handler<Req, Res> {
  const answer = (res: Res, status: number, body: JsonObject) => sendJson(res as unknown as Response, status, body);
  return async (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && path === "/healthz") return answer(res, 200, { status: "ok" });
    if (req.method === "GET" && path === "/readyz") {
      const serving = await Promise.all(targets.map((t) => checkHealth(t, "", 1000)));
      const backends = Object.fromEntries(targets.map((t, i) => [t, serving[i] ? "SERVING" : "NOT_SERVING"]));
      return answer(res, serving.every(Boolean) ? 200 : 503, { status: serving.every(Boolean) ? "ready" : "not ready", backends });
    }
    return next(req, res);
  };
}
