import { create } from "@bufbuild/protobuf";
import { AccountSchema, BalanceSchema } from "../../gen/tally/account/v1/account_pb";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import type { DomainError } from "../../platform/errors";
import { startServiceDouble } from "../../test/support/service-double";

export interface ProbeBackend {
  target: string;
  port: number;
  /** What each call arrived with: its method, deadline and the caller the gateway named (and a lookup's ids). */
  calls: { method: string; deadline?: Date; principal: string[]; accountIds?: string[] }[];
  /** Answers every call held so far. */
  release(): void;
  stop(): Promise<void>;
}

export interface ProbeOptions {
  port?: number;
  failWith?: DomainError;
  /** For every call, or each call's own (by its place, from 0). */
  answerAfterMs?: number | ((call: number) => number);
  /** The calls (by place, from 0) answered only when the test releases them. */
  hold?: (call: number) => boolean;
  /** The metadata of every account a lookup finds. */
  metadata?: Record<string, string>;
}

/**
 * A real gRPC server answering AccountService.GetSystemAccount and
 * LookupAccounts, to see what the gateway sends a service: deadlines, metadata
 * and how calls are shared are not visible in the real service's answers. A
 * lookup finds every account asked for, each with a balance of its id's first
 * hex digits. Every other method fails.
 */
export async function startProbeBackend(options: ProbeOptions = {}): Promise<ProbeBackend> {
  const calls: ProbeBackend["calls"] = [];
  const held: (() => void)[] = [];
  const answer = async (method: string, ctx: { deadline?: Date; metadata: { get(key: string): unknown[] } }, accountIds?: string[]) => {
    const place = calls.push({ method, deadline: ctx.deadline, principal: ctx.metadata.get("tally-principal").map(String), accountIds }) - 1;
    const wait = typeof options.answerAfterMs === "function" ? options.answerAfterMs(place) : options.answerAfterMs;
    if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
    if (options.hold?.(place)) await new Promise<void>((resolve) => held.push(resolve));
    if (options.failWith) throw options.failWith;
  };
  const { server, target, port } = await startServiceDouble(
    AccountService,
    {
      getSystemAccount: async (req, ctx) => {
        await answer("getSystemAccount", ctx);
        return { account: create(AccountSchema, { id: "00000000-0000-7000-8000-000000000000", currency: req.currency }) };
      },
      lookupAccounts: async (req, ctx) => {
        await answer("lookupAccounts", ctx, req.accountIds);
        const balance = (id: string) => create(BalanceSchema, { accountId: id, posted: BigInt(`0x${id.slice(0, 8)}`) });
        return { accounts: req.accountIds.map((id) => create(AccountSchema, { id, balance: balance(id), metadata: options.metadata })) };
      },
    },
    options.port,
  );
  const release = () => held.splice(0).forEach((answered) => answered());
  return {
    target,
    port,
    calls,
    release,
    stop: () => {
      release();
      return server.stop(100);
    },
  };
}
