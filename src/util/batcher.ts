// Coalesces calls made in one event-loop turn into one call with all their items: a worker finishing 100
// tasks in a turn sends one ack and one result write, not 100 of each. Each caller's promise settles with
// the batch its item went out in. Order is kept: items flush in the order they were added, and a batch is
// not sent until the one before it has been handed to the client.

export class Batcher<T> {
  private pending: Array<{ item: T; resolve: () => void; reject: (error: unknown) => void }> = [];
  private scheduled = false;

  constructor(
    /** At most this many items per call; a full batch is sent at once. */
    private readonly maxBatch: number,
    private readonly send: (items: T[]) => Promise<unknown>,
  ) {}

  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.pending.length >= this.maxBatch) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate, not a microtask: the callbacks of every reply that arrived in this turn run first,
        // so their settles join the batch.
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.send(batch.map((p) => p.item)).then(
      () => {
        for (const p of batch) p.resolve();
      },
      (error: unknown) => {
        for (const p of batch) p.reject(error);
      },
    );
  }
}
