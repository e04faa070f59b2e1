// Coalesces calls made in one event-loop turn into one call with all their items: a worker finishing 100
// tasks in a turn sends one ack and one result write, not 100 of each. Every caller of a batch gets the same
// promise, which settles with the call its items went out in (one promise per batch, not one per item: at
// 20,000 items a second the difference shows in the garbage collector). Order is kept: items flush in the
// order they were added, and a batch is not sent until the one before it has been handed to the client.

export class Batcher<T> {
  private items: T[] = [];
  /** The promise of the batch being gathered, with its settlers; undefined while none is. */
  private batch: { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } | undefined;
  private scheduled = false;

  constructor(
    /** At most this many items per call; a full batch is sent at once. */
    private readonly maxBatch: number,
    private readonly send: (items: T[]) => Promise<unknown>,
  ) {}

  add(item: T): Promise<void> {
    this.items.push(item);
    const batch = (this.batch ??= Batcher.open());
    if (this.items.length >= this.maxBatch) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      // setImmediate, not a microtask: the callbacks of every reply that arrived in this turn run first,
      // so their settles join the batch.
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
    return batch.promise;
  }

  private static open(): NonNullable<Batcher<unknown>['batch']> {
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  }

  private flush(): void {
    const batch = this.batch;
    if (!batch) return;
    const items = this.items;
    this.items = [];
    this.batch = undefined;
    this.send(items).then(() => batch.resolve(), batch.reject);
  }
}
