import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { gatewayConfig, gatewayEnv } from "../../gateway/src/config";
import { telemetryConfig, telemetryEnv, type Env } from "../../platform/config";
import { accountConfig, accountEnv } from "../../services/account/src/config";
import { riskConfig, riskEnv } from "../../services/risk/src/config";
import { transactionsConfig, transactionsEnv } from "../../services/transactions/src/config";

/**
 * docker-compose.yml and the Dockerfile cannot be run here (no Docker engine),
 * so this reads them and checks them against the code: the processes they
 * start exist, every variable they set is one the process reads and parses,
 * every address points at a service that listens there, and the image builds
 * from what the repository holds and runs unprivileged.
 */
const ROOT = path.resolve(__dirname, "../..");
const read = (file: string) => readFileSync(path.join(ROOT, file), "utf8");

interface ComposeService {
  image?: string;
  build?: string | { context: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  deploy?: { replicas?: number };
  healthcheck?: { test: string[] };
  container_name?: string;
  stop_grace_period?: string;
}
const compose = parse(read("docker-compose.yml"), { merge: true }) as { services: Record<string, ComposeService>; volumes: Record<string, unknown> };
const services = compose.services;

/** Each Tally process: its entry point, the variables it reads, and how it parses them. */
const TALLY = {
  account: { main: "services/account/src/main.ts", names: accountEnv({}), parse: accountConfig, port: "GRPC_PORT" },
  transactions: { main: "services/transactions/src/main.ts", names: transactionsEnv({}), parse: transactionsConfig, port: "GRPC_PORT" },
  risk: { main: "services/risk/src/main.ts", names: riskEnv({}), parse: riskConfig, port: "GRPC_PORT" },
  gateway: { main: "gateway/src/main.ts", names: gatewayEnv({}), parse: gatewayConfig, port: "HTTP_PORT" },
} as const;
const tallyNames = Object.keys(TALLY) as (keyof typeof TALLY)[];

/** The variables the runtime stage of the image sets (`ENV NAME=value`), under what compose sets. */
const imageEnv: Env = Object.fromEntries([...read("Dockerfile").split(/^FROM .* AS runtime$/m)[1].matchAll(/^ENV (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
const envOf = (name: string): Env => services[name].environment ?? {};
/** What a Tally process sees in its container: the image's variables, then compose's. */
const containerEnvOf = (name: string): Env => ({ ...(tallyNames.includes(name as keyof typeof TALLY) ? imageEnv : {}), ...envOf(name) });
/** The port a Tally process listens on, as it reads its compose environment. */
const listensOn = (name: keyof typeof TALLY): string => String((TALLY[name].parse(containerEnvOf(name)) as Record<string, unknown>)[TALLY[name].port]);
const hostPort = (address: string) => {
  const url = new URL(address.includes("://") ? address : `tcp://${address}`);
  return { host: url.hostname, port: url.port };
};

describe("docker-compose.yml", () => {
  it("runs PostgreSQL, NATS, Jaeger, the three services and the gateway", () => {
    expect(Object.keys(services).sort()).toEqual(["account", "gateway", "jaeger", "nats", "postgres", "risk", "transactions"]);
  });

  it.each(tallyNames)("%s runs its own entry point, built from the one Dockerfile under its own name", (name) => {
    const service = services[name];
    expect(service.build).toBe(".");
    // Services that build one shared tag race to create it.
    expect(service.image).toBeUndefined();
    const [node, main] = service.command ?? [];
    expect(node).toBe("node");
    expect(main).toBe(`dist/${TALLY[name].main.replace(/\.ts$/, ".js")}`);
    expect(existsSync(path.join(ROOT, TALLY[name].main))).toBe(true);
  });

  it.each(tallyNames)("%s sets only variables it reads, with values it accepts", (name) => {
    const env = envOf(name);
    const known = new Set([...Object.keys(TALLY[name].names), ...Object.keys(telemetryEnv(0))]);
    expect(Object.keys(env).filter((v) => !known.has(v))).toEqual([]);
    expect(() => TALLY[name].parse(containerEnvOf(name))).not.toThrow();
    expect(() => telemetryConfig(0, env)).not.toThrow();
  });

  it("points every service address at the service that listens there", () => {
    const urls = { ACCOUNT_SERVICE_URL: "account", TRANSACTIONS_SERVICE_URL: "transactions", RISK_SERVICE_URL: "risk" } as const;
    let checked = 0;
    for (const name of tallyNames) {
      for (const [variable, target] of Object.entries(urls)) {
        const value = envOf(name)[variable];
        if (value === undefined) continue;
        expect({ variable, ...hostPort(value) }).toEqual({ variable, host: target, port: listensOn(target) });
        checked++;
      }
    }
    // transactions → account, risk; risk → account; gateway → all three.
    expect(checked).toBe(6);
  });

  it("gives the services the database, broker and collector that compose runs", () => {
    const pg = services.postgres.environment!;
    const natsPort = /^port:\s*(\d+)/m.exec(read("deploy/nats.conf"))![1];
    for (const name of ["account", "transactions", "risk"]) {
      const env = envOf(name);
      const db = new URL(env.DATABASE_URL!);
      expect({ host: db.hostname, user: db.username, password: db.password, database: db.pathname.slice(1) }).toEqual({
        host: "postgres",
        user: pg.POSTGRES_USER,
        password: pg.POSTGRES_PASSWORD,
        database: pg.POSTGRES_DB,
      });
      expect(hostPort(env.NATS_URL!)).toEqual({ host: "nats", port: natsPort });
    }
    for (const name of tallyNames) {
      const otlp = hostPort(envOf(name).OTEL_EXPORTER_OTLP_ENDPOINT!);
      expect(otlp.host).toBe("jaeger");
      expect(services.jaeger.ports).toContain(`${otlp.port}:${otlp.port}`);
    }
  });

  it.each(tallyNames)("gives %s time to shut down gracefully before Docker kills it", (name) => {
    const grace = (TALLY[name].parse(containerEnvOf(name)) as { SHUTDOWN_GRACE_MS: number }).SHUTDOWN_GRACE_MS;
    const [, seconds] = /^(\d+)s$/.exec(services[name].stop_grace_period ?? "10s")!;
    // The calls in flight drain for up to the grace, and the steps after (consumers, relay, spans) each up to a second more than it.
    expect(Number(seconds) * 1000).toBeGreaterThanOrEqual(2 * (grace + 1000));
  });

  it("runs two replicas of each service, none with a fixed host port or name", () => {
    for (const name of ["account", "transactions", "risk"]) {
      expect(services[name].deploy?.replicas).toBe(2);
      expect(services[name].ports).toBeUndefined();
      expect(services[name].container_name).toBeUndefined();
    }
  });

  it("publishes the gateway on the port it listens on, and Jaeger's UI", () => {
    const port = String(gatewayConfig(containerEnvOf("gateway")).HTTP_PORT);
    expect(services.gateway.ports).toEqual([`${port}:${port}`]);
    expect(services.jaeger.ports).toContain("16686:16686");
    expect(services.jaeger.environment).toMatchObject({ COLLECTOR_OTLP_ENABLED: "true" });
  });

  it.each(tallyNames)("%s is health-checked where it listens", (name) => {
    const port = listensOn(name);
    const [cmd, node, probe, kind, target] = services[name].healthcheck!.test;
    expect([cmd, node, probe]).toEqual(["CMD", "node", "dist/platform/health-probe.js"]);
    expect(existsSync(path.join(ROOT, "platform/health-probe.ts"))).toBe(true);
    if (name === "gateway") expect([kind, target]).toEqual(["http", `http://127.0.0.1:${port}/readyz`]);
    else expect([kind, target]).toEqual(["grpc", `127.0.0.1:${port}`]);
  });

  it("health-checks PostgreSQL and NATS, and waits only on what has a health check", () => {
    const pg = services.postgres.environment!;
    expect(services.postgres.healthcheck?.test).toEqual(["CMD", "pg_isready", "-h", "127.0.0.1", "-U", pg.POSTGRES_USER, "-d", pg.POSTGRES_DB]);
    expect(services.nats.healthcheck?.test.join(" ")).toContain(`http://127.0.0.1:${/^http_port:\s*(\d+)/m.exec(read("deploy/nats.conf"))![1]}/healthz`);
    for (const service of Object.values(services)) {
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(services[dependency]).toBeDefined();
        if (condition === "service_healthy") expect(services[dependency].healthcheck).toBeDefined();
      }
    }
  });

  it("keeps PostgreSQL's and JetStream's data in named volumes, and mounts files that exist", () => {
    const mounts = Object.values(services).flatMap((s) => s.volumes ?? []);
    for (const mount of mounts) {
      const [source] = mount.split(":");
      if (source.startsWith(".")) expect(existsSync(path.join(ROOT, source))).toBe(true);
      else expect(Object.keys(compose.volumes)).toContain(source);
    }
    expect(services.postgres.volumes).toContain("postgres-data:/var/lib/postgresql/data");
    const storeDir = /store_dir:\s*(\S+)/.exec(read("deploy/nats.conf"))![1];
    expect(services.nats.volumes).toContain(`nats-data:${storeDir}`);
    const config = services.nats.command!.join(" ").match(/-c (\S+)/)![1];
    expect(services.nats.volumes).toContain(`./deploy/nats.conf:${config}:ro`);
  });

  const dockerCompose = ["/usr/bin/docker-compose", "/usr/local/bin/docker-compose"].find(existsSync);
  (dockerCompose ? it : it.skip)("is a valid compose file to docker-compose itself", () => {
    const result = spawnSync(dockerCompose!, ["-f", "docker-compose.yml", "config", "-q"], { cwd: ROOT, encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });
});

describe("deploy/nats.conf", () => {
  const conf = read("deploy/nats.conf");

  it("turns JetStream on with file storage that is synced on every write", () => {
    expect(conf).toMatch(/jetstream \{[^}]*store_dir: \/data[^}]*sync_interval: always[^}]*\}/s);
    // sync_interval came with NATS 2.10.
    const [major, minor] = services.nats.image!.split(":")[1].split(/[.-]/).map(Number);
    expect(major * 100 + minor).toBeGreaterThanOrEqual(210);
  });

  // The machine's own nats-server parses the rest (older ones than the image's do not know sync_interval).
  const natsServer = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].find(existsSync);
  (natsServer ? it : it.skip)("is a configuration nats-server accepts", () => {
    const folder = mkdtempSync(path.join(tmpdir(), "tally-nats-"));
    const file = path.join(folder, "nats.conf");
    writeFileSync(file, conf.replace(/^\s*sync_interval:.*$/m, ""));
    const result = spawnSync(natsServer!, ["-c", file, "-t"], { encoding: "utf8" });
    rmSync(folder, { recursive: true });
    expect(`${result.stdout}${result.stderr}`.trim()).toBe(`nats-server: configuration file ${file} is valid`);
    expect(result.status).toBe(0);
  });
});

describe("Dockerfile", () => {
  const lines = read("Dockerfile")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const stages = lines.reduce<{ name: string; lines: string[] }[]>((all, line) => {
    const from = /^FROM \S+ AS (\S+)$/i.exec(line);
    if (from) all.push({ name: from[1], lines: [] });
    else all.at(-1)?.lines.push(line);
    return all;
  }, []);
  const stage = (name: string) => stages.find((s) => s.name === name)!.lines;
  const ignored = read(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));

  it("builds in one stage and runs in another", () => {
    expect(stages.map((s) => s.name)).toEqual(["build", "runtime"]);
  });

  it("starts from a Node that the project supports", () => {
    const image = /^ARG NODE_IMAGE=node:(\d+)\.(\d+)/.exec(lines.find((l) => l.startsWith("ARG NODE_IMAGE="))!)!;
    const [, minMajor, minMinor] = /^>=(\d+)\.(\d+)/.exec(JSON.parse(read("package.json")).engines.node)!;
    expect(Number(image[1]) * 100 + Number(image[2])).toBeGreaterThanOrEqual(Number(minMajor) * 100 + Number(minMinor));
  });

  it("copies into the build what the build compiles, and what it copies exists and is not ignored", () => {
    const copied = stage("build")
      .filter((l) => l.startsWith("COPY "))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    for (const source of copied) {
      expect(existsSync(path.join(ROOT, source))).toBe(true);
      expect(ignored).not.toContain(source);
    }
    const build = JSON.parse(read("tsconfig.build.json")) as { include: string[]; extends: string };
    expect(copied).toEqual(expect.arrayContaining([...build.include, "tsconfig.build.json", path.basename(build.extends), "package.json", "package-lock.json"]));
    expect(stage("build")).toContain("RUN npm run build && npm prune --omit=dev --no-audit --no-fund");
  });

  it("keeps out of the image what is local to a machine", () => {
    expect(ignored).toEqual(expect.arrayContaining([".git", "node_modules", "dist", ".tally"]));
  });

  it("ships the compiled code and every service's migrations, and runs as an unprivileged user", () => {
    const runtime = stage("runtime");
    const fromBuild = runtime.filter((l) => l.startsWith("COPY --from=build ")).map((l) => l.split(/\s+/).at(-1));
    expect(fromBuild).toEqual(expect.arrayContaining(["dist", "node_modules", "./"]));
    for (const service of ["account", "transactions", "risk"]) {
      expect(existsSync(path.join(ROOT, "services", service, "migrations", "meta", "_journal.json"))).toBe(true);
      expect(fromBuild).toContain(`services/${service}/migrations`);
    }
    const user = runtime.filter((l) => l.startsWith("USER ")).at(-1);
    expect(user).toBe("USER node");
    // Which is what makes the gateway refuse the published development secret.
    expect(imageEnv).toEqual({ NODE_ENV: "production" });
  });

  it("exposes every port compose uses, and runs the gateway unless told otherwise", () => {
    const exposed = lines.find((l) => l.startsWith("EXPOSE "))!.split(/\s+/).slice(1);
    for (const name of tallyNames) {
      expect(exposed).toContain(listensOn(name));
      expect(exposed).toContain(String(telemetryConfig(0, envOf(name)).METRICS_PORT));
    }
    expect(lines.at(-1)).toBe('CMD ["node", "dist/gateway/src/main.js"]');
  });
});
