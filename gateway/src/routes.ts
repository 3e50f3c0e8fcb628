import type { DescService, Message } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { toConnectError } from "./errors";
import { publicMethods } from "./exposure";
import type { Forward } from "./forward";

/**
 * Registers every public method of every service on the Connect router (gRPC,
 * gRPC-Web and Connect), each handed to the forwarder. Methods not marked
 * public are not registered, so no protocol reaches them.
 */
export function registerRoutes(router: ConnectRouter, services: DescService[], forward: Forward): void {
  for (const service of services) {
    const implementation: Record<string, (request: Message, ctx: HandlerContext) => Promise<Message>> = {};
    for (const method of publicMethods(service)) {
      implementation[method.localName] = async (request, ctx) => {
        try {
          return await forward(method, request, {
            header: (name) => ctx.requestHeader.get(name) ?? undefined,
            timeoutMs: ctx.timeoutMs(),
            protocol: ctx.protocolName,
          });
        } catch (err) {
          throw toConnectError(err);
        }
      };
    }
    router.service(service as never, implementation as never);
  }
}
