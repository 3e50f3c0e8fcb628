import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary, toBinary, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { status as Status } from "@grpc/grpc-js";
import * as reflection from "../../gen/grpc/reflection/v1/reflection_pb";
import { AccountSchema } from "../../gen/tally/account/v1/account_pb";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { LedgerService } from "../../gen/tally/account/v1/ledger_service_pb";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { RiskService } from "../../gen/tally/risk/v1/risk_service_pb";
import { TransactionService } from "../../gen/tally/transactions/v1/transaction_service_pb";
import { TransferStatus } from "../../gen/tally/transactions/v1/transfer_pb";
import { createServiceClient } from "../../platform/grpc/client";
import { grpcServiceDefinition } from "../../platform/grpc/service-definition";
import { newId } from "../../platform/ids";
import { projectRoot } from "../../platform/project-root";
import { expectRpcError, fund, openAccount } from "../../services/transactions/test/fixtures";
import { recordSpans } from "../../test/support/tracing";
import { isPublic } from "../src/exposure";
import { bearer, grpcAuth, startGatewayFor, startGatewayHarness, tokenFor, type GatewayHarness } from "./harness";

const run = promisify(execFile);

let h: GatewayHarness;
let token: string;
let base: string;
let target: string;

beforeAll(async () => {
  h = await startGatewayHarness();
  ({ base, target } = h.gateway);
  token = await tokenFor("admin");
});
afterAll(() => h.stop());

/** Every client a caller might bring, each reaching the gateway on its one port. */
function transports(baseUrl: string, auth: string): Record<string, Transport> {
  const interceptors = [bearer(auth)];
  return {
    "Connect JSON over HTTP/1.1": createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
    "Connect binary over HTTP/2": createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors }),
    "gRPC (Connect client)": createGrpcTransport({ baseUrl, interceptors }),
    "gRPC-Web": createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  };
}

describe("one port, every protocol", () => {
  it("gives the same answer to the same call through grpc-js, every Connect transport, REST JSON and buf curl", async () => {
    const account = await openAccount(h, { customerId: "same-answer" });
    const expected = toJson(AccountSchema, account);
    const answers: Record<string, unknown> = {};

    const grpcJs = createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 });
    answers["grpc-js"] = toJson(AccountSchema, (await grpcJs.getAccount({ accountId: account.id }, grpcAuth(token))).account!);
    grpcJs.close();
    for (const [name, transport] of Object.entries(transports(base, token))) {
      answers[name] = toJson(AccountSchema, (await createClient(AccountService, transport).getAccount({ accountId: account.id })).account!);
    }
    const rest = await fetch(`${base}/v1/accounts/${account.id}`, { headers: { authorization: `Bearer ${token}` } });
    answers["REST JSON (fetch)"] = ((await rest.json()) as { account: unknown }).account;
    for (const protocol of ["grpc", "connect", "grpcweb"]) {
      const { stdout } = await run(
        path.join(projectRoot(), "node_modules/.bin/buf"),
        ["curl", "--schema", "proto", "--protocol", protocol, "--http2-prior-knowledge", "-H", `Authorization: Bearer ${token}`, "-d", JSON.stringify({ accountId: account.id }), `${base}/tally.account.v1.AccountService/GetAccount`],
        { cwd: projectRoot() },
      );
      answers[`buf curl --protocol ${protocol}`] = (JSON.parse(stdout) as { account: unknown }).account;
    }
    expect(Object.keys(answers)).toHaveLength(9);
    for (const answer of Object.values(answers)) expect(answer).toEqual(expected);
  });

  it("moves money end to end through the gateway", async () => {
    const [a, b] = [await openAccount(h), await openAccount(h)];
    await fund(h, a.id, 1_000n);
    const client = createClient(TransactionService, transports(base, token)["Connect binary over HTTP/2"]);
    const { transfer } = await client.createTransfer({ requestId: newId(), fromAccountId: a.id, toAccountId: b.id, amount: { amount: 250n, currency: "USD" } });
    expect(transfer?.status).toBe(TransferStatus.POSTED);
  });
});

describe("tracing", () => {
  const spans = recordSpans();
  const callerSpan = "00f067aa0ba902b7";
  const expectedProtocol: Record<string, string> = {
    "Connect JSON over HTTP/1.1": "connect",
    "Connect binary over HTTP/2": "connect",
    "gRPC (Connect client)": "grpc",
    "gRPC-Web": "grpc-web",
  };

  it("makes one server span per call on every protocol, continuing the caller's trace and naming it in X-Trace-Id", async () => {
    const seen: Record<string, { header: string; traceId: string }> = {};
    for (const [name, transport] of Object.entries(transports(base, token))) {
      const traceId = randomBytes(16).toString("hex");
      let header = "";
      await createClient(AccountService, transport).getSystemAccount(
        { currency: "USD" },
        { headers: { traceparent: `00-${traceId}-${callerSpan}-01` }, onHeader: (h) => (header = h.get("x-trace-id") ?? "") },
      );
      seen[expectedProtocol[name]] = { header, traceId };
    }
    const restTrace = randomBytes(16).toString("hex");
    const res = await fetch(`${base}/v1/system-accounts/USD`, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${restTrace}-${callerSpan}-01` } });
    expect(res.status).toBe(200);
    seen.rest = { header: res.headers.get("x-trace-id") ?? "", traceId: restTrace };

    for (const [protocol, { header, traceId }] of Object.entries(seen)) {
      expect({ protocol, header }).toEqual({ protocol, header: traceId });
      const server = spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER);
      expect(server.map((s) => [s.name, s.attributes["tally.protocol"], s.parentSpanContext?.spanId])).toEqual([
        ["tally.account.v1.AccountService/GetSystemAccount", protocol, callerSpan],
      ]);
    }
  });

  it("starts a trace of its own when the caller sends none, and marks only the server's faults as errors", async () => {
    const missing = await fetch(`${base}/v1/accounts/${newId()}`, { headers: { authorization: `Bearer ${token}` } });
    expect(missing.status).toBe(404);
    const traceId = missing.headers.get("x-trace-id")!;
    const [span] = spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.SERVER);
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.attributes).toMatchObject({ "tally.error.reason": "ACCOUNT_NOT_FOUND", "http.response.status_code": 404 });
    expect(span.status.code).not.toBe(SpanStatusCode.ERROR);
  });
});

describe("errors keep their reason and fields on every protocol", () => {
  it("over grpc-js", async () => {
    const client = createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000 });
    await expectRpcError(client.getAccount({ accountId: "nope" }, grpcAuth(token)), Status.INVALID_ARGUMENT, "INVALID_ID", "account_id");
    client.close();
  });

  it.each(["Connect JSON over HTTP/1.1", "gRPC (Connect client)", "gRPC-Web"])("over %s", async (name) => {
    const client = createClient(AccountService, transports(base, token)[name]);
    const err = await client.getAccount({ accountId: newId() }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);
    expect(err?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("ACCOUNT_NOT_FOUND");
    expect(err?.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("account_id");
  });
});

describe("internal methods are not reachable", () => {
  it("LedgerService is not served at all", async () => {
    const client = createServiceClient(LedgerService, target, { defaultTimeoutMs: 10_000 });
    await expect(client.reconcile({}, grpcAuth(token))).rejects.toMatchObject({ code: Status.UNIMPLEMENTED });
    client.close();
  });

  it("RiskService.AssessTransfer is not, though its public methods are", async () => {
    const client = createClient(RiskService, transports(base, token)["Connect JSON over HTTP/1.1"]);
    const err = await client.assessTransfer({}).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unimplemented);
    expect((await client.listRules({})).rules.length).toBeGreaterThan(0);
  });
});

describe("connections that go wrong", () => {
  it("a client that resets its connection before saying anything does not disturb the gateway", async () => {
    const net = await import("node:net");
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(h.gateway.port, "127.0.0.1", () => {
          socket.resetAndDestroy();
          resolve();
        });
        socket.on("error", reject);
      });
    }
    await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});

describe("TLS", () => {
  let tls: Awaited<ReturnType<typeof startGatewayFor>>;
  let ca: Buffer;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "tally-tls-"));
    const [cert, key] = [path.join(dir, "cert.pem"), path.join(dir, "key.pem")];
    await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert]);
    ca = readFileSync(cert);
    tls = await startGatewayFor(h, { TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
  });
  afterAll(async () => {
    await tls.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves gRPC, Connect over HTTP/1.1 and HTTP/2, gRPC-Web and REST on the one TLS port", async () => {
    // A grpc-js channel with TLS credentials (the platform client speaks cleartext to services inside).
    const channel = new grpc.Client(tls.target, grpc.credentials.createSsl(ca));
    const { requestSerialize, responseDeserialize } = grpcServiceDefinition(AccountService).getSystemAccount;
    const viaGrpc = await new Promise<{ account?: { currency: string } }>((resolve, reject) =>
      channel.makeUnaryRequest("/tally.account.v1.AccountService/GetSystemAccount", requestSerialize, responseDeserialize, { currency: "USD" }, grpcAuth(token).metadata, (err, res) =>
        err ? reject(err) : resolve(res as never),
      ),
    );
    expect(viaGrpc.account?.currency).toBe("USD");
    channel.close();

    const nodeOptions = { ca };
    const interceptors = [bearer(token)];
    for (const transport of [
      createConnectTransport({ baseUrl: tls.base, httpVersion: "1.1", nodeOptions, interceptors }),
      createConnectTransport({ baseUrl: tls.base, httpVersion: "2", nodeOptions, interceptors }),
      createGrpcWebTransport({ baseUrl: tls.base, httpVersion: "2", nodeOptions, interceptors }),
      createGrpcTransport({ baseUrl: tls.base, nodeOptions, interceptors }),
    ]) {
      expect((await createClient(AccountService, transport).getSystemAccount({ currency: "EUR" })).account?.currency).toBe("EUR");
    }
    const rest = await new Promise<string>((resolve, reject) =>
      https
        .get(`${tls.base}/v1/system-accounts/GBP`, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => resolve(body));
        })
        .on("error", reject),
    );
    expect(JSON.parse(rest)).toMatchObject({ account: { currency: "GBP" } });
  });

  it("does not speak cleartext there", async () => {
    await expect(fetch(`http://${tls.target}/healthz`)).rejects.toThrow();
  });
});

describe("gRPC server reflection", () => {
  type Request = MessageInitShape<typeof reflection.ServerReflectionRequestSchema>;
  /** Asks over one stream, as grpcurl does, and returns the answers in order. */
  async function ask(requests: Request[], options: { base?: string; token?: string | null } = {}) {
    const interceptors = options.token === null ? [] : [bearer(options.token ?? (await tokenFor("customer", "reflecting")))];
    const client = createClient(reflection.ServerReflection, createGrpcTransport({ baseUrl: options.base ?? h.gateway.base, interceptors }));
    const answers: reflection.ServerReflectionResponse[] = [];
    const stream = (async function* () {
      for (const request of requests) yield request;
    })();
    for await (const answer of client.serverReflectionInfo(stream)) answers.push(answer);
    return answers;
  }

  /** The same over grpc-js, of the older grpc.reflection.v1alpha, whose messages are v1's field for field. */
  async function askV1alpha(requests: Request[]): Promise<reflection.ServerReflectionResponse[]> {
    const client = new grpc.Client(h.gateway.target, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", (bytes: Uint8Array) => Buffer.from(bytes), (bytes: Buffer) => bytes, grpcAuth(await tokenFor("teller")).metadata);
    const answers: reflection.ServerReflectionResponse[] = [];
    return new Promise((resolve, reject) => {
      call.on("data", (bytes: Buffer) => answers.push(fromBinary(reflection.ServerReflectionResponseSchema, bytes)));
      call.on("error", reject);
      call.on("end", () => {
        client.close();
        resolve(answers);
      });
      for (const request of requests) call.write(toBinary(reflection.ServerReflectionRequestSchema, create(reflection.ServerReflectionRequestSchema, request)));
      call.end();
    });
  }

  /** The files each after those it imports, as a registry is built; every import must be among them. */
  function importsFirst(files: FileDescriptorProto[]): FileDescriptorProto[] {
    const ordered: FileDescriptorProto[] = [];
    const visit = (file: FileDescriptorProto) => {
      if (ordered.includes(file)) return;
      for (const name of file.dependency) {
        const imported = files.find((f) => f.name === name);
        if (!imported) throw new Error(`${file.name} imports ${name}, which was not sent`);
        visit(imported);
      }
      ordered.push(file);
    };
    files.forEach(visit);
    return ordered;
  }
  const internal = [AccountService, LedgerService, RiskService, TransactionService].flatMap((s) => s.methods.filter((m) => !isPublic(m)).map((m) => `${s.typeName}.${m.name}`));

  it("lists the public services, and describes each with its public methods and every file it imports, so a tool needs no protos", async () => {
    const [listed, described, inside, unknown] = await ask([
      { messageRequest: { case: "listServices", value: "" } },
      { messageRequest: { case: "fileContainingSymbol", value: "tally.risk.v1.RiskService" } },
      { messageRequest: { case: "fileContainingSymbol", value: "tally.risk.v1.RiskService.AssessTransfers" } },
      { messageRequest: { case: "fileContainingSymbol", value: "tally.nothing.v1.Nowhere" } },
    ]);
    const names = listed.messageResponse.case === "listServicesResponse" ? listed.messageResponse.value.service.map((s) => s.name) : [];
    expect(names.sort()).toEqual(["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "tally.account.v1.AccountService", "tally.risk.v1.RiskService", "tally.transactions.v1.TransactionService"]);
    // The files read as a whole, imports and all, as grpcurl reads them.
    if (described.messageResponse.case !== "fileDescriptorResponse") throw new Error(`no descriptors: ${described.messageResponse.case}`);
    const files = described.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(files) }));
    const riskService = registry.getService("tally.risk.v1.RiskService")!;
    expect(riskService.methods.map((m) => m.name)).toEqual(RiskService.methods.filter(isPublic).map((m) => m.name));
    expect(registry.getMessage("tally.transactions.v1.Transfer")).toBeDefined();
    // What stays inside is not described outside.
    expect(internal).toContain("tally.risk.v1.RiskService.AssessTransfers");
    for (const answer of [inside, unknown]) expect(answer.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: Code.NotFound } });
    const ledger = await ask([{ messageRequest: { case: "fileContainingSymbol", value: "tally.account.v1.LedgerService" } }]);
    expect(ledger[0].messageResponse.case).toBe("errorResponse");
  });

  it("resolves every service it lists, reflection's own too, and fields and enum values by name, as grpcurl's describe asks", async () => {
    const [listed] = await ask([{ messageRequest: { case: "listServices", value: "" } }]);
    const names = listed.messageResponse.case === "listServicesResponse" ? listed.messageResponse.value.service.map((s) => s.name) : [];
    const symbols = [...names, "tally.transactions.v1.Transfer.amount", "tally.common.v1.ERROR_REASON_INSUFFICIENT_FUNDS", ".tally.common.v1.Money"];
    const answers = await ask(symbols.map((value) => ({ messageRequest: { case: "fileContainingSymbol", value } })));
    expect(answers.map((a, i) => [symbols[i], a.messageResponse.case])).toEqual(symbols.map((symbol) => [symbol, "fileDescriptorResponse"]));
  });

  it("answers only a caller with a token, a hundred questions a stream at most, spending its rate limit", async () => {
    await expect(ask([{ messageRequest: { case: "listServices", value: "" } }], { token: null })).rejects.toMatchObject({ code: Code.Unauthenticated });
    const many: Request[] = Array.from({ length: 101 }, () => ({ messageRequest: { case: "listServices", value: "" } }));
    await expect(ask(many)).rejects.toMatchObject({ code: Code.ResourceExhausted });
    const limited = await startGatewayFor(h, { RATE_LIMIT_PER_SECOND: "1", RATE_LIMIT_BURST: "3" });
    try {
      await expect(ask(many.slice(0, 4), { base: limited.base })).rejects.toMatchObject({ code: Code.ResourceExhausted });
    } finally {
      await limited.stop();
    }
  });

  it("ends a stream a tool left open when the gateway stops, answered, rather than hold the drain to its grace period", async () => {
    const gateway = await startGatewayFor(h, { SHUTDOWN_GRACE_MS: "120000" });
    const client = createClient(reflection.ServerReflection, createGrpcTransport({ baseUrl: gateway.base, interceptors: [bearer(await tokenFor("teller"))] }));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const questions = (async function* () {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
      await held;
    })();
    const answers: reflection.ServerReflectionResponse[] = [];
    const stream = (async () => {
      for await (const answer of client.serverReflectionInfo(questions)) answers.push(answer);
    })();
    while (answers.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    const stopped = gateway.stop();
    // Ended by the server with an OK status: the loop completes rather than throws.
    await expect(stream).resolves.toBeUndefined();
    expect(answers).toHaveLength(1);
    // The tool, told, ends its side too; the gateway's port then closes.
    release();
    await stopped;
  }, 30_000);

  it("answers tools that still speak v1alpha the same", async () => {
    const [described] = await askV1alpha([{ messageRequest: { case: "fileByFilename", value: "tally/transactions/v1/transaction_service.proto" } }]);
    if (described.messageResponse.case !== "fileDescriptorResponse") throw new Error(`no descriptors: ${described.messageResponse.case}`);
    const [own] = described.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    expect(own.name).toBe("tally/transactions/v1/transaction_service.proto");
    expect(own.service[0].method.map((m) => m.name)).toEqual(TransactionService.methods.map((m) => m.name));
    expect(described.originalRequest?.messageRequest).toEqual({ case: "fileByFilename", value: "tally/transactions/v1/transaction_service.proto" });
  });
});
