// The quick-start demo (`npm run demo`): starts two real worker processes on the embedded SQLite broker,
// sends them work, and prints each task as it completes. Nothing to install or run beforehand. Ctrl-C (or
// SIGTERM) stops the workers and exits; they stop too if this process is killed outright (./processes.ts).

import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFennel, stopWithThisProcess, type Child } from './processes.ts';

const dir = mkdtempSync(join(tmpdir(), 'fennel-demo-'));
process.env['FENNEL_BROKER_URL'] = `sqlite://${join(dir, 'fennel.db')}`;
const { app, add, sort, countPrimes, fail } = await import('./tasks.ts');

const workers: Child[] = [];
// Interrupted, the demo did not finish: it exits as a process killed by the signal would (128 + its number).
// Its temporary broker goes with it; the app is not closed first, as tasks still awaited would fail loudly.
const stopper = stopWithThisProcess({
  children: () => workers,
  say: (line) => console.log(`demo: ${line}`),
  exitCode: (signal) => 128 + constants.signals[signal],
  cleanUp: () => rmSync(dir, { recursive: true, force: true }),
});

function startWorker(name: string): Promise<Child> {
  const child = startFennel(name, ['worker', '--app', 'examples/tasks.ts', '-c', '2', '--loglevel', 'warn'], { stdout: 'pipe', stderr: 'inherit' });
  workers.push(child);
  return new Promise((resolve, reject) => {
    child.process.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('worker ready')) {
        console.log(`  ${name} ready (pid ${child.process.pid}, process pool × 2)`);
        resolve(child);
      }
    });
    // Stopped on purpose, it is no error: this process exits once the stop is done.
    child.process.once('exit', (code) => {
      if (!stopper.stopping) reject(new Error(`${name} exited with code ${code}`));
    });
  });
}

const started = Date.now();
const elapsed = (): string => `${String(Date.now() - started).padStart(5)} ms`;

console.log(`Fennel demo — broker ${app.config.broker}`);
await Promise.all([startWorker('worker 1'), startWorker('worker 2')]);
try {
  console.log('\nSending tasks…');
  const numbers = Array.from({ length: 200_000 }, () => Math.random());
  const jobs: Array<[string, PromiseLike<unknown>]> = [
    ['math.add(2, 3)', add.delay(2, 3)],
    ['math.sort(200,000 numbers)', sort.delay(numbers).then((sorted) => `sorted; smallest ${sorted[0]!.toFixed(6)}`)],
    ['math.primes(2,000,000)', countPrimes.delay(2_000_000)],
    ['demo.fail("on purpose")', fail.delay('on purpose')],
    ...add.delayMany(Array.from({ length: 1000 }, (_, i) => [i, i] as [number, number])).map((r, i): [string, PromiseLike<unknown>] => [`math.add #${i}`, r]),
  ];
  let bulk = 0;
  await Promise.all(
    jobs.map(async ([label, result]) => {
      try {
        const value = await result;
        if (label.startsWith('math.add #')) {
          if (++bulk === 1000) console.log(`${elapsed()}  1,000 × math.add sent in one transaction: all done`);
        } else console.log(`${elapsed()}  ${label} → ${JSON.stringify(value)}`);
      } catch (error) {
        console.log(`${elapsed()}  ${label} → ${(error as Error).message}`);
      }
    }),
  );
  console.log('\nDone. Stopping the workers (SIGTERM: they finish what they hold, then exit 0).');
} finally {
  await Promise.all(workers.map((w) => (w.process.kill('SIGTERM'), w.exited)));
  await app.close();
  rmSync(dir, { recursive: true, force: true });
}
