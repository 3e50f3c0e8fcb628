/** `work`'s outcome, or the error `late` makes once `ms` pass first; the timer ends with it either way. */
export function rejectAfter<T>(work: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), Math.max(0, ms));
  });
  return Promise.race([work, timedOut]).finally(() => clearTimeout(timer));
}
