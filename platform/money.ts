/** Money is integer minor units; the largest a PostgreSQL bigint and a proto int64 hold. */
export const INT64_MAX = 9_223_372_036_854_775_807n;

/** ISO 4217 currencies Tally knows, with their minor-unit exponents. */
const EXPONENTS: Readonly<Record<string, number>> = {
  AUD: 2, BHD: 3, BRL: 2, CAD: 2, CHF: 2, CLP: 0, CNY: 2, CZK: 2, DKK: 2, EUR: 2,
  GBP: 2, HKD: 2, HUF: 2, IDR: 2, ILS: 2, INR: 2, ISK: 0, JOD: 3, JPY: 0, KRW: 0,
  KWD: 3, MXN: 2, NOK: 2, NZD: 2, OMR: 3, PLN: 2, SAR: 2, SEK: 2, SGD: 2, THB: 2,
  TND: 3, TRY: 2, TWD: 2, USD: 2, VND: 0, ZAR: 2,
};

export const CURRENCIES: readonly string[] = Object.freeze(Object.keys(EXPONENTS).sort());

export const isKnownCurrency = (code: string): boolean => Object.hasOwn(EXPONENTS, code);

const exponentOf = (currency: string): number => EXPONENTS[currency] ?? 2;

/** Minor units as a person reads them: formatMoney(123456n, "USD") is "USD 1,234.56". */
export function formatMoney(minor: bigint, currency: string): string {
  const exponent = exponentOf(currency);
  const scale = 10n ** BigInt(exponent);
  const magnitude = minor < 0n ? -minor : minor;
  const fraction = exponent > 0 ? `.${(magnitude % scale).toString().padStart(exponent, "0")}` : "";
  return `${currency} ${minor < 0n ? "-" : ""}${(magnitude / scale).toLocaleString("en-US")}${fraction}`;
}

/** An amount as a person writes it ("1234.5", "1,234.50") in minor units; undefined when it is not one, or has more decimals than the currency. */
export function parseMoney(text: string, currency: string): bigint | undefined {
  const exponent = exponentOf(currency);
  const match = /^(\d{1,3}(?:,\d{3})*|\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match || (match[2] ?? "").length > exponent) return undefined;
  return BigInt(match[1].replaceAll(",", "")) * 10n ** BigInt(exponent) + BigInt((match[2] ?? "").padEnd(exponent, "0") || "0");
}
