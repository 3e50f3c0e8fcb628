/** The addresses in a comma-separated list ("10.0.0.1:50051, 10.0.0.2:50051"). */
export const addressesOf = (list: string): string[] =>
  list
    .split(",")
    .map((a) => a.trim())
    .filter(Boolean);

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}:\d+$/;
const IPV6 = /^\[[0-9a-fA-F:.]+\]:\d+$/;

/**
 * The grpc-js channel target for one address or several replicas' addresses.
 * One name ("account:50051") resolves through DNS to every record it has; a
 * list of IP addresses becomes grpc-js's static "ipv4:" or "ipv6:" target.
 * Either way the client balances round-robin over whichever answer.
 */
export function channelTarget(list: string): string {
  const addresses = addressesOf(list);
  if (addresses.length === 0) throw new Error("no address given");
  if (addresses.length === 1) return addresses[0];
  if (addresses.every((a) => IPV4.test(a))) return `ipv4:${addresses.join(",")}`;
  if (addresses.every((a) => IPV6.test(a))) return `ipv6:${addresses.join(",")}`;
  throw new Error(`replica lists must be IP:port addresses of one family, not ${JSON.stringify(list)}; a DNS name with several records balances by itself`);
}
