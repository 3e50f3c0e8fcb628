/** tally.<source>.<type>, e.g. tally.account.account_opened (the prefix is configurable for isolation). */
export const eventSubject = (prefix: string, source: string, type: string): string => `${prefix}.${source}.${type}`;
