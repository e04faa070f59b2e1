// The thread pool: each slot is a worker_thread. Lighter than processes; a thread that throws out of its
// event loop is replaced, but a native crash takes the whole worker down (use `process` for isolation).

import { Worker } from 'node:worker_threads';
import type { FromSlot, SlotData } from './ipc.ts';
import { slotEntry } from './process.ts';
import { SlotPool, type RecycleOptions, type SlotHandle } from './slots.ts';

/**
 * Node 20 does not apply `--import` loader hooks to a worker thread's entry file, so a thread starts from
 * this small bootstrap: it registers tsx (for the user's .ts tasks module, and for slot-main.ts in
 * development) and then imports the slot entry.
 */
function bootstrap(): string {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(slotEntry().href)}); });`;
}

export function threadPool(size: number, data: SlotData, recycle: RecycleOptions = {}): SlotPool {
  return new SlotPool('thread', size, threadSlots(data), { maxTasksPerChild: recycle.maxTasksPerChild });
}

/** What starts one thread slot (a worker_thread loading the app at `data.appPath`). */
export function threadSlots(data: SlotData): () => SlotHandle {
  const code = bootstrap();
  // Resolution conditions (--conditions=development) must match the worker's, so `fennel` resolves alike.
  const execArgv = process.execArgv.filter((a) => a.startsWith('--conditions') || a.startsWith('-C'));
  return (): SlotHandle => {
    const worker = new Worker(code, { eval: true, workerData: data, execArgv });
    return {
      send: (message) => worker.postMessage(message),
      kill: () => void worker.terminate(),
      onMessage: (listener) => worker.on('message', (m) => listener(m as FromSlot)),
      onExit: (listener) => {
        let error: Error | undefined;
        worker.on('error', (e: Error) => (error = e));
        worker.once('exit', (code) => listener(error ? `thread error: ${error.message}` : `thread exit code ${code}`));
      },
      pid: process.pid,
    };
  };
}
