// Mints a development token for a role, signed with the gateway's HS256 secret:
//   npm run token -- teller
//   npm run token -- customer --customer cust-42 --ttl 86400
import { parseArgs } from "node:util";
import { ROLE_NAMES, type RoleName } from "./auth/principal";
import { developmentToken } from "./auth/tokens";
import { gatewayConfig } from "./config";

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { subject: { type: "string" }, customer: { type: "string" }, ttl: { type: "string", default: "3600" } },
  });
  const roles = positionals as RoleName[];
  if (roles.length === 0 || roles.some((r) => !ROLE_NAMES.includes(r))) {
    throw new Error(`usage: mint-token <role>... [--subject id] [--customer id] [--ttl seconds]; roles: ${ROLE_NAMES.join(", ")}`);
  }
  const token = await developmentToken(gatewayConfig(), roles[0], { roles, subject: values.subject, customerId: values.customer, ttlSeconds: Number(values.ttl) });
  process.stdout.write(`${token}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
});
