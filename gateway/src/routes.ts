import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { Backend } from "./backends";
import { toConnectError } from "./errors";
import { publicMethods } from "./exposure";

export interface ForwardOptions {
  defaultDeadlineMs: number;
  maxDeadlineMs: number;
}

/** The backend call's deadline: the client's, capped; the default when it names none. */
export function deadlineOf(ctx: Pick<HandlerContext, "timeoutMs">, options: ForwardOptions): Date {
  const asked = ctx.timeoutMs();
  const ms = asked === undefined ? options.defaultDeadlineMs : Math.min(Math.max(asked, 1), options.maxDeadlineMs);
  return new Date(Date.now() + ms);
}

/**
 * Registers every public method of every backend on the Connect router, each
 * forwarding to its service over gRPC. Methods not marked public are not
 * registered, so no protocol reaches them.
 */
export function registerRoutes(router: ConnectRouter, backends: Backend[], options: ForwardOptions): void {
  for (const { service, client } of backends) {
    const implementation: Record<string, (request: unknown, ctx: HandlerContext) => Promise<unknown>> = {};
    for (const method of publicMethods(service)) {
      implementation[method.localName] = async (request, ctx) => {
        try {
          return await client[method.localName](request, { deadline: deadlineOf(ctx, options) });
        } catch (err) {
          throw toConnectError(err);
        }
      };
    }
    router.service(service as DescService as never, implementation as never);
  }
}
