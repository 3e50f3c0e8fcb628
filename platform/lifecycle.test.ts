import { testLogger } from "../test/support/infra";
import { recordingLogger } from "../test/support/logs";
import { Lifecycle } from "./lifecycle";

const never = () => new Promise<void>(() => {});

describe("Lifecycle", () => {
  it("runs stop steps in the reverse order of their registration", async () => {
    const ran: string[] = [];
    const lifecycle = new Lifecycle(testLogger());
    for (const name of ["database", "broker", "relay", "grpc server"]) lifecycle.onStop(name, () => void ran.push(name));
    await lifecycle.stop("test");
    expect(ran).toEqual(["grpc server", "relay", "broker", "database"]);
  });

  it("stops what is started while it is already stopping, once, after the rest", async () => {
    const ran: string[] = [];
    const lifecycle = new Lifecycle(testLogger());
    lifecycle.onStop("database", () => void ran.push("database"));
    lifecycle.onStop("nats", async () => {
      // A signal arrived mid-startup: startup goes on and registers one more part.
      lifecycle.onStop("outbox relay", () => void ran.push("outbox relay"));
      ran.push("nats");
    });
    await lifecycle.stop("signal");
    await lifecycle.stop("again");
    expect(ran).toEqual(["nats", "database", "outbox relay"]);
  });

  it("waits for an asynchronous step before starting the next", async () => {
    const ran: string[] = [];
    const lifecycle = new Lifecycle(testLogger());
    lifecycle.onStop("second", () => void ran.push("second"));
    lifecycle.onStop("first", async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      ran.push("first");
    });
    await lifecycle.stop("test");
    expect(ran).toEqual(["first", "second"]);
  });

  it("moves on from a step that hangs beyond the step timeout, and reports it", async () => {
    const ran: string[] = [];
    const { log, lines } = recordingLogger();
    const lifecycle = new Lifecycle(log, 100);
    lifecycle.onStop("database", () => void ran.push("database"));
    lifecycle.onStop("stuck relay", never);
    lifecycle.onStop("grpc server", () => void ran.push("grpc server"));
    await lifecycle.stop("test");
    expect(ran).toEqual(["grpc server", "database"]);
    expect(lines).toContainEqual(expect.objectContaining({ msg: "shutdown step timed out", step: "stuck relay" }));
  });

  it("moves on from a step that fails, synchronously or not, and reports it", async () => {
    const ran: string[] = [];
    const { log, lines } = recordingLogger();
    const lifecycle = new Lifecycle(log);
    lifecycle.onStop("database", () => void ran.push("database"));
    lifecycle.onStop("broker", async () => {
      throw new Error("drain failed");
    });
    lifecycle.onStop("telemetry", () => {
      throw new Error("flush failed");
    });
    await expect(lifecycle.stop("test")).resolves.toBeUndefined();
    expect(ran).toEqual(["database"]);
    const failed = lines.filter((l) => l.msg === "shutdown step failed").map((l) => l.step);
    expect(failed).toEqual(["telemetry", "broker"]);
  });

  it("runs the steps once when stop is called twice", async () => {
    let runs = 0;
    const lifecycle = new Lifecycle(testLogger());
    lifecycle.onStop("server", async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      runs++;
    });
    const first = lifecycle.stop("SIGTERM");
    const second = lifecycle.stop("SIGINT");
    expect(second).toBe(first);
    await Promise.all([first, second]);
    await lifecycle.stop("again, after it stopped");
    expect(runs).toBe(1);
  });
});
