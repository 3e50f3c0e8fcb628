/**
 * Bounds work done while a scrape waits (a query, a JetStream request): a
 * slow dependency then costs that one reading, not the whole scrape.
 */
export function withinScrape<T>(work: Promise<T>, ms = 1000): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}
