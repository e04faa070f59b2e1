// The entry point of a pool slot: a child process (process pool) or a worker thread (thread pool).
// It loads the app, says ready, then runs one job at a time as the pool sends them.

import { parentPort, workerData, isMainThread } from 'node:worker_threads';
import { loadApp } from '../load-app.ts';
import { LazyAbort } from '../lazy-abort.ts';
import { runJob } from '../run-job.ts';
import type { FromSlot, SlotData, ToSlot } from './ipc.ts';

const inThread = !isMainThread && parentPort !== null;

function send(message: FromSlot): void {
  if (inThread) parentPort!.postMessage(message);
  else process.send?.(message);
}

function onMessage(handler: (message: ToSlot) => void): void {
  if (inThread) parentPort!.on('message', handler);
  else process.on('message', (m) => handler(m as ToSlot));
}

async function main(): Promise<void> {
  const data: SlotData = inThread ? (workerData as SlotData) : (JSON.parse(process.env['FENNEL_SLOT_DATA'] ?? '{}') as SlotData);
  const { app } = await loadApp(data.appPath);
  const running = new Map<string, LazyAbort>();
  onMessage((message) => {
    switch (message.type) {
      case 'run': {
        const { job } = message;
        const controller = new LazyAbort();
        running.set(job.id, controller);
        void Promise.resolve(runJob(app.registry, job, () => controller.signal, (metaJson) => send({ type: 'progress', id: job.id, metaJson }))).then((outcome) => {
          running.delete(job.id);
          send({ type: 'done', id: job.id, outcome, rssBytes: process.memoryUsage.rss() });
        });
        break;
      }
      case 'abort':
        running.get(message.id)?.abort(new Error(message.reason));
        break;
    }
  });
  if (!inThread) {
    // A child process exits when its parent goes away, so an orphan never runs on.
    process.on('disconnect', () => {
      for (const controller of running.values()) controller.abort(new Error('worker exited'));
      process.exit(0);
    });
    // Ctrl-C reaches the whole process group; the worker decides when its slots stop, not the terminal.
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
  }
  send({ type: 'ready' });
}

main().catch((error: unknown) => {
  send({ type: 'fatal', message: (error as Error).message ?? String(error) });
  process.exitCode = 1;
  if (!inThread) setTimeout(() => process.exit(1), 50);
});
