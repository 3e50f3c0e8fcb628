import { create } from "@bufbuild/protobuf";
import { AccountSchema } from "../../gen/tally/account/v1/account_pb";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { DomainError, ErrorReason } from "../../platform/errors";
import { GrpcServer, type HandlersOf } from "../../platform/grpc/server";
import { testLogger } from "../../test/support/infra";

export interface ProbeBackend {
  target: string;
  port: number;
  /** What each call arrived with: its deadline and the caller the gateway named. */
  calls: { deadline?: Date; principal: string[] }[];
  stop(): Promise<void>;
}

/**
 * A real gRPC server answering AccountService.GetSystemAccount, to see what
 * the gateway sends a service: deadlines and metadata are not visible in the
 * real service's answers. Every other method fails.
 */
export async function startProbeBackend(options: { port?: number; failWith?: DomainError; answerAfterMs?: number } = {}): Promise<ProbeBackend> {
  const calls: ProbeBackend["calls"] = [];
  const server = new GrpcServer({ host: "127.0.0.1", port: options.port ?? 0, log: testLogger() });
  const unimplemented = async () => {
    throw new DomainError(ErrorReason.INTERNAL, "the probe answers GetSystemAccount only");
  };
  const handlers = {
    ...Object.fromEntries(AccountService.methods.map((m) => [m.localName, unimplemented])),
    getSystemAccount: async (req, ctx) => {
      calls.push({ deadline: ctx.deadline, principal: ctx.metadata.get("tally-principal").map(String) });
      if (options.answerAfterMs) await new Promise((resolve) => setTimeout(resolve, options.answerAfterMs));
      if (options.failWith) throw options.failWith;
      return { account: create(AccountSchema, { id: "00000000-0000-7000-8000-000000000000", currency: req.currency }) };
    },
  } as HandlersOf<typeof AccountService>;
  server.add(AccountService, handlers);
  const bound = await server.start();
  return { target: `127.0.0.1:${bound}`, port: bound, calls, stop: () => server.stop(100) };
}
