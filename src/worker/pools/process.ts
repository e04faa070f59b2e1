// The process pool (default): each slot is a child process, so a crash, an out-of-memory or an infinite
// loop takes down one slot, never the worker. Children load TypeScript through tsx, like the worker.

import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { FromSlot, SlotData } from './ipc.ts';
import { SlotPool, type RecycleOptions, type SlotHandle } from './slots.ts';

/** The slot entry beside this file: slot-main.ts under tsx, slot-main.js when built. */
export function slotEntry(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? './slot-main.ts' : './slot-main.js', import.meta.url);
}

/** Node flags for slots: the worker's own, plus tsx so they can load the user's .ts tasks module. */
export function slotExecArgv(): string[] {
  const argv = [...process.execArgv].filter((a) => !a.startsWith('--inspect'));
  if (!argv.some((a) => a.includes('tsx'))) {
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    argv.push('--import', tsx);
  }
  return argv;
}

export function processPool(size: number, data: SlotData, recycle: RecycleOptions = {}): SlotPool {
  return new SlotPool('process', size, processSlots(data), recycle);
}

/** What starts one process slot (a child loading the app at `data.appPath`). */
export function processSlots(data: SlotData): () => SlotHandle {
  const execArgv = slotExecArgv();
  return (): SlotHandle => {
    const child = fork(slotEntry(), [], {
      execArgv,
      env: { ...process.env, FENNEL_SLOT_DATA: JSON.stringify(data) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // V8's serializer, not JSON lines: a large string (a task's argument, its encoded result) crosses as
      // its bytes, without JSON's escaping scan, quoting and parse on either side: a 5.3 MB string's round
      // trip to a slot and back takes ~20 ms instead of ~46. And a task gets the values its message decoded
      // to (a Date, a Buffer), as in the thread and async pools, not their JSON forms.
      serialization: 'advanced',
    });
    // A send to a child that is dying fails with EPIPE; its exit reports the job as lost, so the error
    // itself must not crash the worker.
    child.on('error', () => {});
    return {
      send: (message) => {
        if (child.connected) child.send(message);
      },
      kill: () => child.kill('SIGKILL'),
      onMessage: (listener) => child.on('message', (m) => listener(m as FromSlot)),
      onExit: (listener) => child.once('exit', (code, signal) => listener(signal ? `killed by ${signal}` : `exit code ${code}`)),
      pid: child.pid,
    };
  };
}
