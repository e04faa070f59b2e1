// The tasks module of the benchmarks. Workers load it (`fennel worker --app bench/tasks.ts`, broker from
// FENNEL_BROKER_URL); the scenarios call benchApp() for a producer on each run's fresh database. One no-op
// task, so what is measured is Fennel's own cost per task, and the Redis comparison's echo task.
import { Fennel, type FennelOptions } from 'fennel';

export function benchApp(options: FennelOptions = {}) {
  const app = new Fennel(options);
  const noop = app.task('bench.noop', () => null);
  /**
   * The Redis comparison's task (bench/redis.bench.ts), the same for every peer there: one argument, returned, so
   * that each result the producer awaits can be checked to be its own.
   */
  const echo = app.task('bench.echo', (x: number) => x);
  return { app, noop, echo };
}

export const { app, noop, echo } = benchApp();
