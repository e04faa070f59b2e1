// The ids this worker must not run: a copy of the backend's revoked set, filled when the worker starts
// (so a restart keeps honouring revocations) and kept current by the backend's push or poll. Consulted
// synchronously by the executor before a task runs; a revocation with `terminate` also stops a running task.

import type { ResultBackend, Revocation } from '../backends/backend.ts';

export class RevokedSet {
  private readonly until = new Map<string, number>();
  private stopWatching: (() => Promise<void>) | undefined;
  private sweeps = 0;

  constructor(private readonly onTerminate: (taskId: string) => void) {}

  /** Starts following the backend's revocations; a backend without them (rpc://) leaves the set empty. */
  async start(backend: ResultBackend): Promise<void> {
    if (!backend.watchRevocations) return;
    this.stopWatching = await backend.watchRevocations((r) => this.add(r));
  }

  private add(revocation: Revocation): void {
    this.until.set(revocation.taskId, revocation.expiresAt.getTime());
    if (revocation.terminate) this.onTerminate(revocation.taskId);
    // Expired ids are dropped now and then, so the set stays as small as the revocations in force.
    if (++this.sweeps % 1000 === 0) {
      const now = Date.now();
      for (const [id, until] of this.until) if (until <= now) this.until.delete(id);
    }
  }

  /**
   * Remote control's revoke (Celery's): held in this worker's memory until `untilMs`, not in the backend. The
   * caller terminates a running task itself when asked to.
   */
  addLocal(taskId: string, untilMs: number): void {
    this.until.set(taskId, Math.max(untilMs, this.until.get(taskId) ?? 0));
  }

  /** The ids revoked now (inspect revoked). */
  ids(): string[] {
    const now = Date.now();
    return [...this.until].filter(([, until]) => until > now).map(([id]) => id);
  }

  has(taskId: string): boolean {
    const until = this.until.get(taskId);
    return until !== undefined && until > Date.now();
  }

  async stop(): Promise<void> {
    await this.stopWatching?.().catch(() => {});
  }
}
