/** Money is integer minor units; these are the bounds of a PostgreSQL bigint and a proto int64. */
export const INT64_MAX = 9_223_372_036_854_775_807n;
export const INT64_MIN = -9_223_372_036_854_775_808n;

/** ISO 4217 currencies Tally knows, with their minor-unit exponents. */
const EXPONENTS: Readonly<Record<string, number>> = {
  AUD: 2, BHD: 3, BRL: 2, CAD: 2, CHF: 2, CLP: 0, CNY: 2, CZK: 2, DKK: 2, EUR: 2,
  GBP: 2, HKD: 2, HUF: 2, IDR: 2, ILS: 2, INR: 2, ISK: 0, JOD: 3, JPY: 0, KRW: 0,
  KWD: 3, MXN: 2, NOK: 2, NZD: 2, OMR: 3, PLN: 2, SAR: 2, SEK: 2, SGD: 2, THB: 2,
  TND: 3, TRY: 2, TWD: 2, USD: 2, VND: 0, ZAR: 2,
};

export const CURRENCIES: readonly string[] = Object.freeze(Object.keys(EXPONENTS).sort());

export const isKnownCurrency = (code: string): boolean => Object.hasOwn(EXPONENTS, code);

export function currencyExponent(code: string): number {
  const exponent = EXPONENTS[code];
  if (exponent === undefined) throw new RangeError(`unknown currency ${code}`);
  return exponent;
}

/** Renders minor units for people: formatMinor(-12345n, "USD") === "-123.45 USD". */
export function formatMinor(amount: bigint, currency: string): string {
  const exponent = currencyExponent(currency);
  const sign = amount < 0n ? "-" : "";
  const digits = (amount < 0n ? -amount : amount).toString().padStart(exponent + 1, "0");
  const whole = digits.slice(0, digits.length - exponent);
  const fraction = exponent > 0 ? `.${digits.slice(digits.length - exponent)}` : "";
  return `${sign}${whole}${fraction} ${currency}`;
}
