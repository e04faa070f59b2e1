// The thread pool: each slot is a worker_thread. Lighter than processes; a thread that throws out of its
// event loop is replaced, but a native crash takes the whole worker down (use `process` for isolation).

import { Worker } from 'node:worker_threads';
import type { FromSlot, SlotData } from './ipc.ts';
import { slotEntry, slotExecArgv } from './process.ts';
import { SlotPool, type SlotHandle } from './slots.ts';

export function threadPool(size: number, data: SlotData): SlotPool {
  const execArgv = slotExecArgv();
  return new SlotPool('thread', size, (): SlotHandle => {
    const worker = new Worker(slotEntry(), { workerData: data, execArgv });
    return {
      send: (message) => worker.postMessage(message),
      kill: () => void worker.terminate(),
      onMessage: (listener) => worker.on('message', (m) => listener(m as FromSlot)),
      onExit: (listener) => {
        let error: Error | undefined;
        worker.on('error', (e: Error) => (error = e));
        worker.once('exit', (code) => listener(error ? `thread error: ${error.message}` : `thread exit code ${code}`));
      },
    };
  });
}
