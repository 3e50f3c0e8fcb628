import { ConnectError, createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AccountService } from "../gen/tally/account/v1/account_service_pb";
import { RiskService } from "../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../gen/tally/transactions/v1/transaction_service_pb";

/** Tally's public API as one caller sees it: the generated Connect clients, through the gateway. */
export interface TallyClients {
  account: Client<typeof AccountService>;
  transactions: Client<typeof TransactionService>;
  risk: Client<typeof RiskService>;
}

/** The Connect protocol to the gateway at `baseUrl`, each call carrying `token`. */
export function gatewayTransport(baseUrl: string, token: string): Transport {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("Authorization", `Bearer ${token}`);
    return next(request);
  };
  return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors: [bearer] });
}

/** Clients that call the gateway at `baseUrl`, each call carrying `token`. */
export function tallyClients(baseUrl: string, token: string): TallyClients {
  const transport = gatewayTransport(baseUrl, token);
  return {
    account: createClient(AccountService, transport),
    transactions: createClient(TransactionService, transport),
    risk: createClient(RiskService, transport),
  };
}

/** An answer with the trace the gateway gave its call (its X-Trace-Id header). */
export interface Traced<T> {
  answer: T;
  traceId: string;
}

/** Makes one call and keeps its trace id; a failed call's error names its trace too. */
export async function traced<T>(call: (options: CallOptions) => Promise<T>): Promise<Traced<T>> {
  let traceId = "";
  try {
    const answer = await call({ onHeader: (headers) => (traceId = headers.get("x-trace-id") ?? "") });
    return { answer, traceId };
  } catch (err) {
    const error = ConnectError.from(err);
    const id = error.metadata.get("x-trace-id") ?? traceId;
    if (id) error.message = `${error.message} (trace ${id})`;
    throw error;
  }
}
