import { create, toJson } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { DomainError } from "./errors";
import { requireTimestamp } from "./validation";

describe("requireTimestamp", () => {
  const at = (seconds: bigint, nanos = 0) => create(TimestampSchema, { seconds, nanos });

  it("takes every time proto3 JSON can write, and nothing else", () => {
    const first = at(-62_135_596_800n);
    const last = at(253_402_300_799n, 999_999_999);
    for (const ok of [first, last, at(0n)]) {
      expect(() => requireTimestamp(ok, "t")).not.toThrow();
      expect(() => toJson(TimestampSchema, ok)).not.toThrow();
    }
    for (const bad of [at(-62_135_596_801n), at(253_402_300_800n), at(0n, -1), at(0n, 1_000_000_000)]) {
      expect(() => toJson(TimestampSchema, bad)).toThrow();
      expect(() => requireTimestamp(bad, "transfer.t")).toThrow(expect.objectContaining({ field: "transfer.t" }));
      expect(() => requireTimestamp(bad, "t")).toThrow(DomainError);
    }
  });

  it("lets a time not given pass", () => {
    expect(() => requireTimestamp(undefined, "t")).not.toThrow();
  });
});
