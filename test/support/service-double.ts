import type { DescService } from "@bufbuild/protobuf";
import { DomainError, ErrorReason } from "../../platform/errors";
import { GrpcServer, type HandlersOf } from "../../platform/grpc/server";
import { testLogger } from "./infra";

/**
 * A real gRPC server for `service` that answers only the methods a test gives it (as the test says:
 * slowly, not at all, or wrongly), every other method refusing: to see what a caller does when a
 * peer behaves so, which the real service will not do on demand.
 */
export async function startServiceDouble<S extends DescService>(service: S, answers: Partial<HandlersOf<S>>, port = 0): Promise<{ server: GrpcServer; target: string; port: number }> {
  const notUsed = async () => {
    throw new DomainError(ErrorReason.INTERNAL, "not used in this test");
  };
  const handlers = { ...Object.fromEntries(service.methods.map((m) => [m.localName, notUsed])), ...answers } as unknown as HandlersOf<S>;
  const server = new GrpcServer({ host: "127.0.0.1", port, log: testLogger() }).add(service, handlers);
  const bound = await server.start();
  return { server, target: `127.0.0.1:${bound}`, port: bound };
}
