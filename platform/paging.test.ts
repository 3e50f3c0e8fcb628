import { thrownBy } from "../test/support/thrown";
import { DomainError, ErrorReason } from "./errors";
import { decodePageToken, encodePageToken, pageSize } from "./paging";

const domainErrorOf = (run: () => unknown) => thrownBy(DomainError, run);

describe("pageSize", () => {
  it("uses the default size when none is asked for", () => {
    expect(pageSize(0)).toBe(50);
    expect(pageSize(0, { defaultSize: 7, maxSize: 20 })).toBe(7);
  });

  it("keeps a size within the limit and clamps a larger one to the maximum", () => {
    expect(pageSize(1)).toBe(1);
    expect(pageSize(500)).toBe(500);
    expect(pageSize(501)).toBe(500);
    expect(pageSize(1_000_000, { defaultSize: 7, maxSize: 20 })).toBe(20);
  });

  it.each([-1, -500, 1.5, Number.NaN])("refuses %p as INVALID_FIELD on page_size", (size) => {
    const err = domainErrorOf(() => pageSize(size));
    expect(err.reason).toBe(ErrorReason.INVALID_FIELD);
    expect(err.reasonName).toBe("INVALID_FIELD");
    expect(err.field).toBe("page_size");
  });
});

describe("page tokens", () => {
  it("decode to the cursor they were encoded from", () => {
    const cursor = { after: "0197a0c2-7f1e-7c4b-9a57-0a8e5e1f2b3c", at: "2025-01-01T00:00:00Z" };
    const token = encodePageToken(cursor);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, ["after", "at"])).toEqual(cursor);
  });

  it("treat an empty token as the first page", () => {
    expect(decodePageToken("", ["after"])).toBeUndefined();
  });

  const tokens: [string, string][] = [
    ["garbage", "!!!not a token!!!"],
    ["base64 of text that is not JSON", Buffer.from("hello").toString("base64url")],
    ["a JSON string", encodeJson("after")],
    ["JSON null", encodeJson(null)],
    ["a cursor missing a key", encodePageToken({ other: "x" })],
    ["a cursor with an extra key", encodePageToken({ after: "x", admin: "true" })],
    ["a cursor whose value is not a string", encodeJson({ after: 42 })],
    ["a cursor for another listing", encodePageToken({ before: "17" })],
  ];

  it.each(tokens)("refuse %s as INVALID_PAGE_TOKEN on page_token", (_, token) => {
    const err = domainErrorOf(() => decodePageToken(token, ["after"]));
    expect(err.reason).toBe(ErrorReason.INVALID_PAGE_TOKEN);
    expect(err.reasonName).toBe("INVALID_PAGE_TOKEN");
    expect(err.field).toBe("page_token");
  });

  it("refuse a token whose bytes were altered", () => {
    const token = encodePageToken({ after: "0197a0c2-7f1e-7c4b-9a57-0a8e5e1f2b3c" });
    const tampered = "x" + token.slice(1);
    expect(tampered).not.toBe(token);
    expect(domainErrorOf(() => decodePageToken(tampered, ["after"])).reason).toBe(ErrorReason.INVALID_PAGE_TOKEN);
  });
});

function encodeJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}
