// The tasks module of the benchmarks. Workers load it (`fennel worker --app bench/tasks.ts`, broker from
// FENNEL_BROKER_URL); the scenarios call benchApp() for a producer on each run's fresh database. One no-op
// task, so what is measured is Fennel's own cost per task.
import { Fennel, type FennelOptions } from 'fennel';

export function benchApp(options: FennelOptions = {}) {
  const app = new Fennel(options);
  const noop = app.task('bench.noop', () => null);
  return { app, noop };
}

export const { app, noop } = benchApp();
