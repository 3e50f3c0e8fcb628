import { create } from "@bufbuild/protobuf";
import { AccountSchema, BalanceSchema } from "../../gen/tally/account/v1/account_pb";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { DomainError, ErrorReason } from "../../platform/errors";
import { GrpcServer, type HandlersOf } from "../../platform/grpc/server";
import { testLogger } from "../../test/support/infra";

export interface ProbeBackend {
  target: string;
  port: number;
  /** What each call arrived with: its method, deadline and the caller the gateway named (and a lookup's ids). */
  calls: { method: string; deadline?: Date; principal: string[]; accountIds?: string[] }[];
  stop(): Promise<void>;
}

/**
 * A real gRPC server answering AccountService.GetSystemAccount and
 * LookupAccounts, to see what the gateway sends a service: deadlines, metadata
 * and how calls are shared are not visible in the real service's answers. A
 * lookup finds every account asked for, each with a balance of its id's first
 * hex digits. Every other method fails.
 */
export async function startProbeBackend(options: { port?: number; failWith?: DomainError; answerAfterMs?: number | ((call: number) => number) } = {}): Promise<ProbeBackend> {
  const calls: ProbeBackend["calls"] = [];
  const server = new GrpcServer({ host: "127.0.0.1", port: options.port ?? 0, log: testLogger() });
  const unimplemented = async () => {
    throw new DomainError(ErrorReason.INTERNAL, "the probe answers GetSystemAccount and LookupAccounts only");
  };
  const answer = async (method: string, ctx: { deadline?: Date; metadata: { get(key: string): unknown[] } }, accountIds?: string[]) => {
    calls.push({ method, deadline: ctx.deadline, principal: ctx.metadata.get("tally-principal").map(String), accountIds });
    // A number for every call, or each call's own (by its place, from 0).
    const wait = typeof options.answerAfterMs === "function" ? options.answerAfterMs(calls.length - 1) : options.answerAfterMs;
    if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
    if (options.failWith) throw options.failWith;
  };
  const handlers = {
    ...Object.fromEntries(AccountService.methods.map((m) => [m.localName, unimplemented])),
    getSystemAccount: async (req, ctx) => {
      await answer("getSystemAccount", ctx);
      return { account: create(AccountSchema, { id: "00000000-0000-7000-8000-000000000000", currency: req.currency }) };
    },
    lookupAccounts: async (req, ctx) => {
      await answer("lookupAccounts", ctx, req.accountIds);
      return { accounts: req.accountIds.map((id) => create(AccountSchema, { id, balance: create(BalanceSchema, { accountId: id, posted: BigInt(`0x${id.slice(0, 8)}`) }) })) };
    },
  } as HandlersOf<typeof AccountService>;
  server.add(AccountService, handlers);
  const bound = await server.start();
  return { target: `127.0.0.1:${bound}`, port: bound, calls, stop: () => server.stop(100) };
}
