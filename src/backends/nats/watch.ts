// Following keys of a bucket by a KV watch (an ephemeral JetStream consumer on the keys' subjects, pushed to this
// process): the watch delivers each key's value as it stands when it starts, then every write after, so a reader
// that starts a watch misses nothing written before or after. A watch whose consumer is lost while followed (the
// server restarted, a long disconnection) is opened again, and delivers the values as they stand once more.

import { watchKeys, type KeyWatch, type KV, type KvWatchEntry } from '../../clients/nats/kv.ts';

export interface Follow {
  /**
   * Settles with the first attempt to open the watch: resolves once it is up (writes from then on are delivered),
   * rejects with the attempt's error. Either way the follow goes on (opening the watch again) until stopped.
   */
  readonly started: Promise<void>;
  /** Stops following; resolves once the server has let the watch's consumer go. */
  stop(): Promise<void>;
}

/** Pause before opening a lost or failed watch again. */
const REOPEN_MS = 500;

/**
 * Calls `onEntry` for the current value of every key matching `key` (a key, or a filter ending in `>`), then for each
 * write, until stopped. With `updatesOnly`, writes only: `onOpen` is then called each time the watch is up again
 * after it was lost (`reopened`), when the caller must read what it follows as it stands. `onLost` is called each
 * time a watch that was up ends (writes from then until it is up again are not delivered).
 */
export function follow(bucket: () => Promise<KV>, key: string, onEntry: (entry: KvWatchEntry) => void, options: { updatesOnly?: boolean; onOpen?: (reopened: boolean) => void; onLost?: () => void } = {}): Follow {
  let stopped = false;
  let current: KeyWatch | undefined;
  let first: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  const started = new Promise<void>((resolve, reject) => (first = { resolve, reject }));
  started.catch(() => {}); // a caller that does not look at it must not see an unhandled rejection
  const settleFirst = (error?: unknown): void => {
    if (!first) return;
    if (error === undefined) first.resolve();
    else first.reject(error);
    first = undefined;
  };
  const run = async (): Promise<void> => {
    for (let attempt = 0; !stopped; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, REOPEN_MS).unref());
      if (stopped) break;
      let watch: KeyWatch;
      try {
        watch = await watchKeys(await bucket(), key, options.updatesOnly ? 'updates' : 'last');
      } catch (error) {
        settleFirst(error);
        continue; // the server is away: try again
      }
      if (stopped) {
        await watch.stop();
        break;
      }
      current = watch;
      options.onOpen?.(first === undefined);
      settleFirst();
      try {
        for await (const entry of watch) {
          if (stopped) break;
          onEntry(entry);
        }
      } catch {
        // the watch failed: opened again, as one that ended
      }
      current = undefined;
      if (!stopped) options.onLost?.();
      if (!stopped) void watch.stop(); // its consumer, if the server still has it
    }
    settleFirst(new Error('stopped'));
  };
  void run();
  return {
    started,
    stop: async () => {
      stopped = true;
      await current?.stop();
    },
  };
}
