// The tasks module of the chord benchmark (bench/canvas.bench.ts). Workers load it (`fennel worker --app
// bench/canvas-tasks.ts`, broker from FENNEL_BROKER_URL); the scenario calls canvasApp() for a producer on
// each run's database. A no-op header task and a callback that counts the results it was given, the same
// two tasks, by name, as bench/peers/celery_chord.py.
import { Fennel, type FennelOptions } from 'fennel';

export function canvasApp(options: FennelOptions = {}) {
  const app = new Fennel(options);
  const noop = app.task('bench.noop', () => null);
  const count = app.task('bench.count', (results: unknown[]) => results.length);
  return { app, noop, count };
}

export const { app, noop, count } = canvasApp();
