// A test's resources, closed in reverse order when the test ends, whether it passed or not.

export class CleanupScope {
  protected readonly cleanups: Array<() => Promise<unknown> | unknown> = [];

  async close(): Promise<void> {
    for (const cleanup of this.cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // keep closing the rest
      }
    }
  }
}

/** Wraps a test body so it gets a fresh scope that is always closed. */
export function scopedWith<S extends CleanupScope>(make: () => S): (body: (s: S) => Promise<void>) => () => Promise<void> {
  return (body) => async () => {
    const scope = make();
    try {
      await body(scope);
    } finally {
      await scope.close();
    }
  };
}
