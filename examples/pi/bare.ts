// The ceiling this machine allows at the moment of a run: the same chunks drawn by plain child processes (as many
// as the pipeline has worker slots), with no queue, no broker and no result store between them. Each child loads
// montecarlo.ts and says it is ready; the clock runs from the moment all of them are told to start to the moment
// the last one has answered with its hits. On an idle 2-CPU machine this is close to half the in-process time; on
// a shared one it shows how much of the second CPU was there, so the pipeline's speedup can be read against it.

import { fork, type ChildProcess } from 'node:child_process';
import type { Chunk } from './montecarlo.ts';

/** What the parent sends a child, and what a child answers. */
export type ToBareChild = { seed: number; chunks: Chunk[] };
export type FromBareChild = { type: 'ready' } | { type: 'done'; counts: Array<[index: number, inside: number]>; computeMs: number };

const CHILD = new URL('./bare-child.ts', import.meta.url);

export interface BareRun {
  /** From the start message to the last child's answer. */
  wallMs: number;
  /** Hits per chunk, by chunk index. */
  counts: number[];
  /** The children's own drawing times, summed. */
  computeMs: number;
  /** The children's pids (all exited when drawInParallel resolves). */
  pids: number[];
}

/** Draws `chunks` in `processes` plain child processes (chunk i in child i mod processes) and times it. */
export async function drawInParallel(seed: number, chunks: readonly Chunk[], processes: number): Promise<BareRun> {
  const children: ChildProcess[] = [];
  try {
    const answers: Array<Promise<FromBareChild & { type: 'done' }>> = [];
    const ready: Array<Promise<void>> = [];
    for (let p = 0; p < processes; p++) {
      // process.execArgv carries tsx (and --conditions) into the child, as the pool's slots get it.
      const child = fork(CHILD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      const exited = new Promise<never>((_, reject) => child.once('exit', (code, signal) => reject(new Error(`a bare child process exited early (${signal ?? `code ${code}`})`))));
      exited.catch(() => {});
      ready.push(Promise.race([new Promise<void>((resolve) => child.once('message', () => resolve())), exited]));
      answers.push(
        Promise.race([
          new Promise<FromBareChild & { type: 'done' }>((resolve) =>
            child.on('message', (message: FromBareChild) => {
              if (message.type === 'done') resolve(message);
            }),
          ),
          exited,
        ]),
      );
    }
    await Promise.all(ready);
    const start = performance.now();
    children.forEach((child, p) => child.send({ seed, chunks: chunks.filter((_, i) => i % processes === p) } satisfies ToBareChild));
    const done = await Promise.all(answers);
    const wallMs = performance.now() - start;
    const counts = new Array<number>(chunks.length).fill(NaN);
    for (const answer of done) for (const [index, inside] of answer.counts) counts[index] = inside;
    return { wallMs, counts, computeMs: done.reduce((sum, d) => sum + d.computeMs, 0), pids: children.map((child) => child.pid ?? -1) };
  } finally {
    // A child exits when its IPC channel closes.
    for (const child of children) if (child.connected) child.disconnect();
    await Promise.all(children.map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())))));
  }
}
