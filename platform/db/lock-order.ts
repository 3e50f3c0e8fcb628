/**
 * Rows written in one transaction, in the order of a key (a primary or unique key): two
 * transactions writing some of the same rows then take their locks in the same order and wait for
 * one another, instead of each holding a row the other wants (a deadlock).
 */
export function inLockOrder<T>(items: Iterable<T>, key: (item: T) => string): T[] {
  return [...items].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
