// The tasks the demo and the README use. A worker loads this module: npx fennel worker --app examples/tasks.ts
import { Fennel, currentTask } from 'fennel';

export const app = new Fennel({ routes: { 'demo.slow*': { queue: 'celery' } } });

export const add = app.task('math.add', (a: number, b: number) => a + b);

/** Sorts numbers; CPU-bound work of the kind a web server must not do on its event loop. */
export const sort = app.task('math.sort', (values: number[]) => [...values].sort((x, y) => x - y));

/** Counts primes below n, reporting progress as it goes. */
export const countPrimes = app.task('math.primes', async (n: number) => {
  const ctx = currentTask();
  let count = 0;
  for (let i = 2; i < n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) if (i % d === 0) { prime = false; break; }
    if (prime) count++;
    if (i % 50_000 === 0) await ctx.progress({ done: i, of: n });
  }
  return count;
});

export const fail = app.task('demo.fail', (why: string) => {
  throw new TypeError(`failing on purpose: ${why}`);
});
