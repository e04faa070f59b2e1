// An AbortController made only when a task reads its signal: most tasks never do, and the worker would
// otherwise build one for every task it runs. Aborting before anyone looked is remembered, so a signal
// read afterwards is already aborted, with the same reason.

export class LazyAbort {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
