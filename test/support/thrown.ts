/** The error a call throws, checked to be of the given class; fails the test if it throws nothing. */
export function thrownBy<E extends Error>(kind: new (...args: never[]) => E, run: () => unknown): E {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(kind);
    return err as E;
  }
  throw new Error(`expected a ${kind.name}, but the call returned`);
}
