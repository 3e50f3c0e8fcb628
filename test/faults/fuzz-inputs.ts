import { create, ScalarType, toBinary, type DescField, type DescMessage, type JsonObject, type JsonValue } from "@bufbuild/protobuf";

/** Ids the inputs reuse now and then, so that some requests reach real accounts and transfers. */
export interface KnownIds {
  accounts: string[];
  transfers: string[];
}

// Strings that have broken parsers, routers, SQL and loggers somewhere.
const NASTY_STRINGS = [
  "",
  " ",
  "..",
  "../../etc/passwd",
  "%00",
  "\u0000",
  "null",
  "undefined",
  "NaN",
  "-1",
  "1e309",
  "' or 1=1 --",
  '{"$gt":""}',
  "__proto__",
  "constructor",
  "😀".repeat(50),
  "\ud800",
  "a".repeat(70_000),
  "USD ",
  "usd",
  "XXX",
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff",
];

// int64 as JSON: strings and numbers, in and out of range, and things that are not numbers at all.
const NASTY_INTEGERS: JsonValue[] = [
  "0",
  "1",
  "-1",
  "9223372036854775807",
  "9223372036854775808",
  "-9223372036854775808",
  "-9223372036854775809",
  "18446744073709551616",
  "1.5",
  "1e3",
  "0x10",
  " 5",
  "",
  0,
  -1,
  1.5,
  2 ** 53 + 1,
  true,
  null,
  [],
  {},
];

/** Random requests, well formed and not: a seeded source, so a failing run can be replayed. */
export class FuzzInputs {
  constructor(
    readonly random: () => number,
    private readonly known: KnownIds,
  ) {}

  chance(p: number): boolean {
    return this.random() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)];
  }

  int(max: number): number {
    return Math.floor(this.random() * max);
  }

  nastyString(): string {
    if (this.chance(0.3)) return String.fromCodePoint(...Array.from({ length: this.int(20) }, () => this.int(0x110000)));
    return this.pick(NASTY_STRINGS);
  }

  /** A value for one field, usually of the right type and plausible, sometimes neither. */
  private fieldJson(field: DescField, depth: number): JsonValue {
    if (this.chance(0.1)) return this.pick<JsonValue>([this.nastyString(), this.pick(NASTY_INTEGERS), [1, 2], { x: 1 }]);
    if (field.fieldKind === "list") return Array.from({ length: this.int(4) }, () => this.singularJson(field, depth));
    if (field.fieldKind === "map") return Object.fromEntries(Array.from({ length: this.int(3) }, () => [this.nastyString().slice(0, 40), this.nastyString().slice(0, 40)]));
    return this.singularJson(field, depth);
  }

  private singularJson(field: DescField, depth: number): JsonValue {
    if (field.message) return depth > 3 ? {} : this.messageJson(field.message, depth + 1);
    if (field.enum) return this.chance(0.7) ? this.pick(field.enum.values).name : this.pick<JsonValue>([this.int(1000), "NOT_A_VALUE", -1]);
    const name = field.name;
    switch (field.scalar) {
      case ScalarType.STRING:
        if (name.endsWith("account_id") && this.chance(0.7)) return this.pick(this.known.accounts);
        if (name.endsWith("transfer_id") && this.chance(0.7)) return this.pick(this.known.transfers);
        if (name === "currency" && this.chance(0.7)) return this.pick(["USD", "EUR", "JPY", "BHD"]);
        if (name === "request_id" && this.chance(0.8)) return `fuzz-${this.int(1e9)}`;
        return this.nastyString();
      case ScalarType.BOOL:
        return this.chance(0.5);
      case ScalarType.INT64:
      case ScalarType.UINT64:
      case ScalarType.SINT64:
      case ScalarType.FIXED64:
      case ScalarType.SFIXED64:
        return this.chance(0.5) ? String(this.int(100_000)) : this.pick(NASTY_INTEGERS);
      case ScalarType.BYTES:
        return this.pick(["", "AAEC", "not base64!", "=".repeat(9)]);
      default:
        return this.chance(0.6) ? this.int(2000) - 100 : this.pick(NASTY_INTEGERS);
    }
  }

  /** A request message as proto3 JSON: some fields set, some not, now and then an unknown one. */
  messageJson(message: DescMessage, depth = 0): JsonObject {
    const json: JsonObject = {};
    for (const field of message.fields) {
      if (this.chance(0.7)) json[this.chance(0.9) ? field.jsonName : field.name] = this.fieldJson(field, depth);
    }
    if (this.chance(0.05)) json[this.nastyString().slice(0, 30) || "unknownField"] = 1;
    return json;
  }

  /** A request body as JSON text: usually a message, sometimes not JSON at all or not an object. */
  jsonBody(message: DescMessage): string {
    const roll = this.random();
    if (roll < 0.05) return this.pick(["", "{", "[", "nul", '{"a":}', "{}}", "\u0000", "[".repeat(10_000) + "]".repeat(10_000)]);
    if (roll < 0.1) return JSON.stringify(this.pick<JsonValue>([[], "text", 42, null, true]));
    if (roll < 0.12) return JSON.stringify({ pad: "x".repeat(1_100_000) });
    return JSON.stringify(this.messageJson(message));
  }

  /** A request as protobuf: a valid encoding of random fields, usually then damaged, or plain noise. */
  binaryBody(message: DescMessage): Uint8Array {
    if (this.chance(0.2)) return Uint8Array.from({ length: this.int(300) }, () => this.int(256));
    let valid: Uint8Array;
    try {
      valid = toBinary(message, create(message, randomScalars(message, this)));
    } catch {
      valid = new Uint8Array();
    }
    if (this.chance(0.3)) return valid;
    const bytes = Uint8Array.from(valid);
    for (let i = 0; i < 1 + this.int(4) && bytes.length > 0; i++) bytes[this.int(bytes.length)] = this.int(256);
    return this.chance(0.3) ? bytes.slice(0, this.int(bytes.length + 1)) : bytes;
  }
}

/** Random values of the message's scalar fields that `create` accepts (right types, any values), for a valid encoding to damage. */
function randomScalars(message: DescMessage, fuzz: FuzzInputs): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const field of message.fields) {
    if (!fuzz.chance(0.6) || field.fieldKind !== "scalar") continue;
    init[field.localName] =
      field.scalar === ScalarType.STRING
        ? fuzz.nastyString().slice(0, 100)
        : field.scalar === ScalarType.BOOL
          ? fuzz.chance(0.5)
          : [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(field.scalar)
            ? BigInt(fuzz.int(2 ** 31)) * (fuzz.chance(0.2) ? -1n : 1n)
            : fuzz.int(1000);
  }
  return init;
}
