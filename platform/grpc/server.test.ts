import * as grpc from "@grpc/grpc-js";
import { status as Status } from "@grpc/grpc-js";
import { AccountService } from "../../gen/tally/account/v1/account_service_pb";
import { testLogger } from "../../test/support/infra";
import { DomainError, ErrorReason } from "../errors";
import { createServiceClient, type ClientOptions } from "./client";
import { checkHealth } from "./health-check";
import { GrpcServer, type CallContext, type GrpcServerOptions, type HandlersOf } from "./server";
import { fromServiceError, RemoteError } from "./status";

/**
 * A real grpc-js server serving AccountService with handlers written here
 * (no database), called through real grpc-js clients.
 */

type AccountHandlers = HandlersOf<typeof AccountService>;
type GetAccount = AccountHandlers["getAccount"];

const GET_ACCOUNT_PATH = "/tally.account.v1.AccountService/GetAccount";

const notUsed = async (): Promise<never> => {
  throw new Error("not used by these tests");
};

interface TestServer {
  server: GrpcServer;
  target: string;
  /** What GetAccount does; each test sets it. */
  getAccount: GetAccount;
  /** How many times GetAccount's handler ran. */
  calls: number;
}

async function startTestServer(options: Partial<GrpcServerOptions> = {}): Promise<TestServer> {
  const state = {} as TestServer;
  state.calls = 0;
  state.getAccount = async (request) => ({ account: { id: request.accountId } });
  const handlers: AccountHandlers = {
    createAccount: notUsed,
    getAccount: (request, context) => {
      state.calls++;
      return state.getAccount(request, context);
    },
    listAccounts: notUsed,
    lookupAccounts: notUsed,
    freezeAccount: notUsed,
    unfreezeAccount: notUsed,
    closeAccount: notUsed,
    getBalance: notUsed,
    listEntries: notUsed,
    getSystemAccount: notUsed,
  };
  state.server = new GrpcServer({ host: "127.0.0.1", port: 0, log: testLogger(), ...options }).add(AccountService, handlers);
  const port = await state.server.start();
  state.target = `127.0.0.1:${port}`;
  return state;
}

const accountClient = (target: string, options: Partial<ClientOptions> = {}) =>
  createServiceClient(AccountService, target, { defaultTimeoutMs: 10_000, ...options });

/** The RemoteError a call rejects with, failing the test if it succeeds or fails otherwise. */
async function remoteErrorOf(call: Promise<unknown>): Promise<RemoteError> {
  try {
    await call;
  } catch (err) {
    expect(err).toBeInstanceOf(RemoteError);
    return err as RemoteError;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const never = () => new Promise<never>(() => {});
const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

/** A promise resolved the next time GetAccount's handler starts, with its call context. */
function nextCall(s: TestServer, then: GetAccount): Promise<CallContext> {
  return new Promise((resolve) => {
    s.getAccount = (request, context) => {
      resolve(context);
      return then(request, context);
    };
  });
}

describe("GrpcServer and createServiceClient", () => {
  let s: TestServer;
  let client: ReturnType<typeof accountClient>;

  beforeAll(async () => {
    s = await startTestServer();
    client = accountClient(s.target);
  });
  afterAll(async () => {
    client.close();
    await s.server.stop(1000);
  });

  beforeEach(() => {
    s.calls = 0;
  });

  it("calls a replica again within a second of its return, however long it was gone", async () => {
    const first = await startTestServer();
    const port = first.server.port;
    const c = accountClient(first.target);
    try {
      await c.getAccount({ accountId: "before" });
      await first.server.stop(1000);
      // Gone long enough for grpc-js's own reconnect backoff to reach four seconds and more.
      await sleep(6_000);
      const back = await startTestServer({ port });
      const returned = Date.now();
      let answeredAfterMs: number | undefined;
      while (answeredAfterMs === undefined && Date.now() - returned < 10_000) {
        answeredAfterMs = await c.getAccount({ accountId: "after" }).then(
          () => Date.now() - returned,
          () => sleep(50).then(() => undefined),
        );
      }
      await back.server.stop(1000);
      expect(answeredAfterMs).toBeLessThan(2_000);
    } finally {
      c.close();
    }
  }, 30_000);

  it("binds a free port when asked for port 0", () => {
    expect(s.server.port).toBeGreaterThan(0);
    expect(s.target).toBe(`127.0.0.1:${s.server.port}`);
  });

  it("returns the handler's response, decoded as the method's output message", async () => {
    s.getAccount = async (request) => ({ account: { id: request.accountId, currency: "EUR", overdraftLimit: 250n } });
    const response = await client.getAccount({ accountId: "acc-1" });
    expect(response.$typeName).toBe("tally.account.v1.GetAccountResponse");
    expect(response.account).toMatchObject({ id: "acc-1", currency: "EUR", overdraftLimit: 250n });
  });

  it("passes the caller's metadata and deadline to the handler", async () => {
    let abortedDuringCall: boolean | undefined;
    const seen = nextCall(s, async (_, context) => {
      await sleep(20);
      abortedDuringCall = context.signal.aborted;
      return {};
    });
    const metadata = new grpc.Metadata();
    metadata.set("x-request-id", "req-42");
    const deadline = new Date(Date.now() + 30_000);
    await client.getAccount({ accountId: "a" }, { metadata, deadline });
    const context = await seen;
    expect(context.metadata.get("x-request-id")).toEqual(["req-42"]);
    expect(context.deadline).toBeInstanceOf(Date);
    // The deadline travels as a relative timeout, so allow for its rounding.
    expect(Math.abs(context.deadline!.getTime() - deadline.getTime())).toBeLessThan(2000);
    expect(abortedDuringCall).toBe(false);
    // Answering normally is not a cancellation: work tied to the signal may outlive the response.
    await sleep(50);
    expect(context.signal.aborted).toBe(false);
  });

  it("refuses a retry policy naming a method the service does not have", () => {
    expect(() => accountClient(s.target, { retryableMethods: ["GetAccount"] })).toThrow("has no method GetAccount");
  });

  describe("errors", () => {
    it("sends a domain error's reason, message, field and metadata to the client", async () => {
      s.getAccount = async () => {
        throw new DomainError(ErrorReason.INSUFFICIENT_FUNDS, "msg", "amount", { available: "10" });
      };
      const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.reason).toBe(ErrorReason.INSUFFICIENT_FUNDS);
      expect(err.reasonName).toBe("INSUFFICIENT_FUNDS");
      expect(err.field).toBe("amount");
      expect(err.violations).toEqual([{ field: "amount", description: "msg" }]);
      expect(err.message).toBe("msg");
      expect(err.metadata).toEqual({ available: "10" });
    });

    it("sends every field violation of a domain error", async () => {
      const violations = [
        { field: "currency", description: "unknown currency" },
        { field: "customer_id", description: "must not be empty" },
      ];
      s.getAccount = async () => {
        throw new DomainError(ErrorReason.INVALID_FIELD, "bad request", violations);
      };
      const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.violations).toEqual(violations);
    });

    it.each([
      [ErrorReason.INVALID_PAGE_TOKEN, Status.INVALID_ARGUMENT],
      [ErrorReason.ACCOUNT_NOT_FOUND, Status.NOT_FOUND],
      [ErrorReason.IDEMPOTENCY_KEY_REUSED, Status.ALREADY_EXISTS],
      [ErrorReason.IDEMPOTENCY_KEY_IN_USE, Status.ABORTED],
      [ErrorReason.PERMISSION_DENIED, Status.PERMISSION_DENIED],
      [ErrorReason.RATE_LIMITED, Status.RESOURCE_EXHAUSTED],
      [ErrorReason.RISK_UNAVAILABLE, Status.UNAVAILABLE],
      [ErrorReason.OVERLOADED, Status.UNAVAILABLE],
      [ErrorReason.ACCOUNT_FROZEN, Status.FAILED_PRECONDITION],
    ])("sends reason %p as gRPC code %p", async (reason, code) => {
      s.getAccount = async () => {
        throw new DomainError(reason, "refused");
      };
      const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
      expect(err.code).toBe(code);
      expect(err.reason).toBe(reason);
      expect(err.violations).toEqual([]);
    });

    it("turns an unexpected error into INTERNAL without leaking its message", async () => {
      s.getAccount = async () => {
        throw new Error("password authentication failed for user ledger_admin");
      };
      const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
      expect(err.code).toBe(Status.INTERNAL);
      expect(err.reasonName).toBe("INTERNAL");
      expect(err.message).not.toMatch(/password|ledger_admin/);
      expect(err.metadata).toEqual({});
    });

    it.each(["ECONNREFUSED", "ECONNRESET", "CONNECTION_CLOSED", "57P01"])(
      "turns a lost dependency (%s) into UNAVAILABLE",
      async (code) => {
        s.getAccount = async () => {
          throw withCode(`connect ${code} 10.0.0.7:5432`, code);
        };
        const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
        expect(err.code).toBe(Status.UNAVAILABLE);
        expect(err.reasonName).toBe("UNAVAILABLE");
        expect(err.message).not.toContain("10.0.0.7");
      },
    );

    it.each(["ECONNREFUSED", "57P01"])(
      "sees a lost dependency (%s) through the query error an ORM wraps it in",
      async (code) => {
        s.getAccount = async () => {
          throw new Error("Failed query: select 1", { cause: withCode(`connect ${code}`, code) });
        };
        const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
        expect(err.code).toBe(Status.UNAVAILABLE);
      },
    );

    it("answers a request that is not a valid protobuf message with INVALID_ARGUMENT, without calling the handler", async () => {
      const raw = new grpc.Client(s.target, grpc.credentials.createInsecure());
      try {
        const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
          raw.makeUnaryRequest(
            GET_ACCOUNT_PATH,
            (bytes: Buffer) => bytes,
            (bytes: Buffer) => bytes,
            Buffer.from([0xff, 0xff, 0xff]),
            new grpc.Metadata(),
            { deadline: new Date(Date.now() + 10_000) },
            (error) => (error ? resolve(error) : reject(new Error("garbage bytes were accepted"))),
          ),
        );
        expect(err.code).toBe(Status.INVALID_ARGUMENT);
        const remote = fromServiceError(err);
        expect(remote.reasonName).toBe("MALFORMED_REQUEST");
        expect(s.calls).toBe(0);
      } finally {
        raw.close();
      }
    });
  });

  describe("deadlines", () => {
    it("applies the client's default deadline to a call that names none", async () => {
      const hasty = accountClient(s.target, { defaultTimeoutMs: 200 });
      try {
        s.getAccount = never;
        const err = await remoteErrorOf(hasty.getAccount({ accountId: "a" }));
        expect(err.code).toBe(Status.DEADLINE_EXCEEDED);
        expect(err.reasonName).toBe("DEADLINE_EXCEEDED");
      } finally {
        hasty.close();
      }
    });

    it("lets a call's own timeout override the default", async () => {
      const patient = accountClient(s.target, { defaultTimeoutMs: 10 * 60_000 });
      try {
        s.getAccount = never;
        const err = await remoteErrorOf(patient.getAccount({ accountId: "a" }, { timeoutMs: 200 }));
        expect(err.code).toBe(Status.DEADLINE_EXCEEDED);
      } finally {
        patient.close();
      }
    });

    it("aborts the handler's signal when the caller's deadline passes", async () => {
      const started = nextCall(s, never);
      const call = client.getAccount({ accountId: "a" }, { timeoutMs: 200 });
      const context = await started;
      expect((await remoteErrorOf(call)).code).toBe(Status.DEADLINE_EXCEEDED);
      if (!context.signal.aborted) {
        await new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }));
      }
      expect(context.signal.aborted).toBe(true);
    });
  });

  describe("retries", () => {
    /** GetAccount fails as unavailable `failures` times, then answers. */
    function flaky(failures: number) {
      let attempts = 0;
      s.getAccount = async (request) => {
        attempts++;
        if (attempts <= failures) throw withCode("connection refused", "ECONNREFUSED");
        return { account: { id: request.accountId } };
      };
      return () => attempts;
    }

    it("retries a method named retryable when the server is unavailable", async () => {
      const retrying = accountClient(s.target, { retryableMethods: ["getAccount"] });
      try {
        const attempts = flaky(2);
        const response = await retrying.getAccount({ accountId: "a" });
        expect(response.account?.id).toBe("a");
        expect(attempts()).toBe(3);
      } finally {
        retrying.close();
      }
    });

    it("does not retry other methods", async () => {
      const attempts = flaky(1);
      const err = await remoteErrorOf(client.getAccount({ accountId: "a" }));
      expect(err.code).toBe(Status.UNAVAILABLE);
      expect(attempts()).toBe(1);
    });
  });
});

describe("GrpcServer request size limit", () => {
  it("refuses a request larger than maxReceiveBytes with RESOURCE_EXHAUSTED", async () => {
    const s = await startTestServer({ maxReceiveBytes: 1024 });
    const client = accountClient(s.target);
    try {
      expect((await client.getAccount({ accountId: "x".repeat(100) })).account?.id).toHaveLength(100);
      const err = await remoteErrorOf(client.getAccount({ accountId: "x".repeat(4096) }));
      expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
      // Not a rate limit: retrying the same request cannot succeed.
      expect(err.reasonName).toBe("REQUEST_TOO_LARGE");
      expect(s.calls).toBe(1);
    } finally {
      client.close();
      await s.server.stop(1000);
    }
  });
});

describe("health", () => {
  const SERVICE = "tally.account.v1.AccountService";

  it("reports the server and its services SERVING after start and nothing after stop", async () => {
    const s = await startTestServer();
    expect(await checkHealth(s.target)).toBe(true);
    expect(await checkHealth(s.target, SERVICE)).toBe(true);
    expect(await checkHealth(s.target, "tally.nothing.v1.NoSuchService")).toBe(false);
    await s.server.stop(1000);
    expect(await checkHealth(s.target)).toBe(false);
    expect(await checkHealth(s.target, SERVICE)).toBe(false);
  });
});

describe("GrpcServer.stop", () => {
  it("lets an in-flight call finish within the grace period", async () => {
    const s = await startTestServer();
    const client = accountClient(s.target);
    try {
      const started = nextCall(s, async (request) => {
        await sleep(300);
        return { account: { id: request.accountId } };
      });
      const call = client.getAccount({ accountId: "in-flight" });
      await started;
      const stopped = s.server.stop(10_000);
      const response = await call;
      expect(response.account?.id).toBe("in-flight");
      await stopped;
      expect(await checkHealth(s.target)).toBe(false);
    } finally {
      client.close();
    }
  });

  it("cuts off calls that outlast the grace period", async () => {
    const s = await startTestServer();
    const client = accountClient(s.target, { defaultTimeoutMs: 10 * 60_000 });
    try {
      const started = nextCall(s, never);
      const call = remoteErrorOf(client.getAccount({ accountId: "stuck" }));
      await started;
      await s.server.stop(100);
      const err = await call;
      expect([Status.CANCELLED, Status.UNAVAILABLE, Status.INTERNAL]).toContain(err.code);
    } finally {
      client.close();
    }
  });
});
