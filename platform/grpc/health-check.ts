import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

const HealthClient = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, "Health");

type CheckCallback = (err: grpc.ServiceError | null, response?: { status: string }) => void;

/** Asks a server's grpc.health.v1 whether a service (or, with "", the whole server) is SERVING. */
export function checkHealth(target: string, service = "", timeoutMs = 1000): Promise<boolean> {
  const client = new HealthClient(target, grpc.credentials.createInsecure());
  const check = (client as unknown as { check: (req: object, opts: grpc.CallOptions, cb: CheckCallback) => void }).check;
  return new Promise<boolean>((resolve) => {
    check.call(client, { service }, { deadline: new Date(Date.now() + timeoutMs) }, (err, response) => {
      client.close();
      resolve(!err && response?.status === "SERVING");
    });
  });
}
