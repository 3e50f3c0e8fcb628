import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { fromJson, getOption, toJson, type DescField, type DescMessage, type DescMethod, type DescService, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { http as httpRule } from "../../gen/google/api/annotations_pb";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { DomainError, ErrorReason } from "../../platform/errors";
import { toConnectError } from "./errors";
import { requireExactIntegers } from "./inexact-json";
import { publicMethods } from "./exposure";
import type { Forward, IncomingCall } from "./forward";

// What connect-node hands its fallback handler: either HTTP version's request and response.
type Request = IncomingMessage | Http2ServerRequest;
export type Response = (Omit<ServerResponse, "write"> | Omit<Http2ServerResponse, "write">) & { write(chunk: string | Uint8Array): boolean };

interface Route {
  verb: string;
  pattern: RegExp;
  params: string[];
  body: string;
  method: DescMethod;
}

/** HTTP status for each gRPC code, as Google's APIs map them. */
const HTTP_STATUS: Record<number, number> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** "/v1/accounts/{account_id}:freeze" → a regular expression with one group per field. */
function compile(template: string): { pattern: RegExp; params: string[] } {
  const params: string[] = [];
  const source = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      const field = /^\{([a-z_][a-z0-9_.]*)\}$/.exec(part);
      if (!field) return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      params.push(field[1]);
      return "([^/:]+)";
    })
    .join("");
  return { pattern: new RegExp(`^${source}$`), params };
}

/** The REST routes of every public method, read from its google.api.http annotation. */
export function restRoutes(services: DescService[]): Route[] {
  const routes: Route[] = [];
  for (const service of services) {
    for (const method of publicMethods(service)) {
      const rule = getOption(method, httpRule);
      for (const binding of rule ? [rule, ...rule.additionalBindings] : []) {
        if (!binding.pattern.case || binding.pattern.case === "custom") continue;
        routes.push({ verb: binding.pattern.case.toUpperCase(), ...compile(binding.pattern.value), body: binding.body, method });
      }
    }
  }
  return routes;
}

// Names that would reach an object's prototype rather than a field of the request.
const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** Sets a possibly dotted field path ("created.start_time") in a JSON object; repeated query keys become lists. */
function assign(target: JsonObject, path: string, value: string, repeated: boolean): void {
  const keys = path.split(".");
  if (keys.some((k) => k === "" || UNSAFE_KEYS.has(k))) throw new DomainError(ErrorReason.MALFORMED_REQUEST, `${path.slice(0, 64)} names no field`, path.slice(0, 64));
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = Object.hasOwn(node, key) ? node[key] : (node[key] = {});
    if (typeof next !== "object" || next === null || Array.isArray(next)) {
      throw new DomainError(ErrorReason.MALFORMED_REQUEST, `${path.slice(0, 64)} conflicts with another parameter`, path.slice(0, 64));
    }
    node = next;
  }
  const last = keys[keys.length - 1];
  if (repeated) node[last] = [...((node[last] as JsonValue[] | undefined) ?? []), value];
  else node[last] = value;
}

/** Whether a query parameter names a repeated field of the request: a list even when given once. */
function isList(message: DescMessage, path: string): boolean {
  let node: DescMessage | undefined = message;
  const keys = path.split(".");
  for (const [i, key] of keys.entries()) {
    const field: DescField | undefined = node?.fields.find((f) => f.name === key || f.jsonName === key);
    if (!field) return false;
    if (i === keys.length - 1) return field.fieldKind === "list";
    node = field.fieldKind === "message" ? field.message : undefined;
  }
  return false;
}

/** A path segment, percent-decoded; a malformed escape is the client's error. */
function decodeSegment(segment: string, field: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new DomainError(ErrorReason.MALFORMED_REQUEST, `${field} is not validly percent-encoded`, field);
  }
}

/** How many times the body limit a body is still read to its end, before it is refused or dropped, rather than cut off. */
const READ_THROUGH = 8;

/**
 * Reads a body to its end, keeping its first `keep` bytes; past `limit` bytes it
 * stops at once (ended: false, and the connection must close). Answering while
 * the client is still sending makes Node close the connection under it, and the
 * client fails to write (EPIPE) instead of reading the answer.
 */
function readThrough(req: Request, keep: number, limit: number): Promise<{ kept: Buffer[]; size: number; ended: boolean }> {
  if (Number(req.headers["content-length"] ?? 0) > limit) return Promise.resolve({ kept: [], size: 0, ended: false });
  const stream = req as unknown as NodeJS.ReadableStream;
  return new Promise((resolve, reject) => {
    let size = 0;
    const kept: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= keep) kept.push(chunk);
      else if (size > limit) resolve({ kept, size, ended: false });
    });
    stream.on("end", () => resolve({ kept, size, ended: true }));
    stream.on("error", reject);
    stream.resume();
  });
}

/** The body, up to maxBytes; a larger one is refused once read through (see readThrough). */
async function readBody(req: Request, maxBytes: number): Promise<string> {
  const { kept, size, ended } = await readThrough(req, maxBytes, READ_THROUGH * maxBytes);
  if (!ended || size > maxBytes) throw new DomainError(ErrorReason.REQUEST_TOO_LARGE, `the request body is over ${maxBytes} bytes`);
  return Buffer.concat(kept).toString("utf8");
}

/**
 * Drops what is left of a body the answer does not need (a request with no
 * route, or refused before its body was read), so the client reads the answer;
 * false when it is too long to read through.
 */
async function discardBody(req: Request, maxBytes: number): Promise<boolean> {
  if (req.complete) return true;
  return readThrough(req, 0, READ_THROUGH * maxBytes).then(
    ({ ended }) => ended,
    () => false,
  );
}

/** A JSON response with its length. */
export function sendJson(res: Response, status: number, body: JsonValue, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  (res as unknown as ServerResponse).writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The error as JSON: Google's error shape, with Tally's reason and the fields at fault. */
export function sendError(res: Response, err: unknown): void {
  const error = toConnectError(err);
  const info = error.findDetails(ErrorInfoSchema)[0];
  const violations = error.findDetails(BadRequestSchema)[0]?.fieldViolations ?? [];
  // A body over the limit is 413 in HTTP, though gRPC has only RESOURCE_EXHAUSTED for it.
  const status = info?.reason === "REQUEST_TOO_LARGE" ? 413 : (HTTP_STATUS[error.code] ?? 500);
  sendJson(res, status, {
    error: {
      code: status,
      status: Code[error.code].replace(/[A-Z]/g, (c, i) => (i > 0 ? `_${c}` : c)).toUpperCase(),
      message: error.rawMessage,
      reason: info?.reason ?? "",
      fieldViolations: violations.map((v) => ({ field: v.field, description: v.description })),
    },
  }, Object.fromEntries(error.metadata));
}

/** The incoming call as the forwarder sees it; a deadline comes as X-Server-Timeout in seconds, as Google's REST APIs take it. */
function incoming(req: Request): IncomingCall {
  const header = (name: string) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value.join(", ") : value;
  };
  const seconds = Number(header("x-server-timeout"));
  return { header, timeoutMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined, protocol: "rest" };
}

/**
 * REST JSON from the google.api.http annotations, for every public method,
 * transcoded generically: path and query parameters and the body become the
 * request message (proto3 JSON); the response message is the response body.
 */
export function restHandler(services: DescService[], forward: Forward, maxBodyBytes: number) {
  const routes = restRoutes(services);
  return async (req: Request, res: Response): Promise<void> => {
    try {
      const url = new URL(req.url ?? "/", "http://gateway");
      const verb = req.method ?? "GET";
      let match: RegExpExecArray | null = null;
      const route = routes.find((r) => r.verb === verb && (match = r.pattern.exec(url.pathname)) !== null);
      if (!route || !match) throw new ConnectError(`no route for ${verb} ${url.pathname}`, Code.NotFound);
      let fields: JsonObject = {};
      if (route.body !== "") {
        const text = await readBody(req, maxBodyBytes);
        let body: JsonValue = {};
        try {
          body = text.trim() === "" ? {} : (JSON.parse(text) as JsonValue);
        } catch {
          throw new DomainError(ErrorReason.MALFORMED_REQUEST, "the request body is not valid JSON");
        }
        requireExactIntegers(body);
        if (route.body === "*") {
          if (typeof body !== "object" || body === null || Array.isArray(body)) throw new DomainError(ErrorReason.MALFORMED_REQUEST, "the request body must be a JSON object");
          // The parsed body itself: copying it with Object.assign would let a "__proto__" key set the copy's prototype.
          fields = body;
        } else fields[route.body] = body;
      } else {
        for (const key of new Set(url.searchParams.keys())) {
          const values = url.searchParams.getAll(key);
          const repeated = values.length > 1 || isList(route.method.input, key);
          for (const value of values) assign(fields, key, value, repeated);
        }
      }
      route.params.forEach((name, i) => assign(fields, name, decodeSegment(match![i + 1], name), false));
      let request;
      try {
        request = fromJson(route.method.input, fields);
      } catch (err) {
        throw new DomainError(ErrorReason.MALFORMED_REQUEST, `the request does not fit ${route.method.input.typeName}: ${(err as Error).message}`);
      }
      const response = await forward(route.method, request, incoming(req));
      sendJson(res, 200, toJson(route.method.output, response as never));
    } catch (err) {
      // A body too large was read as far as it will be; any other is read to its end first, if it is not too long.
      const tooLarge = err instanceof DomainError && err.reason === ErrorReason.REQUEST_TOO_LARGE;
      const read = !tooLarge && (await discardBody(req, maxBodyBytes));
      // Answered before the body was read: over HTTP/1.1 the connection cannot carry another request.
      if (req.httpVersionMajor === 1 && !read && !req.complete) (res as ServerResponse).setHeader("connection", "close");
      sendError(res, err);
    }
  };
}
