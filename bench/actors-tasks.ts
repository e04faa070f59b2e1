// The app module of the actor benchmark (bench/actors.bench.ts). The host worker loads it (`fennel worker --app
// bench/actors-tasks.ts --actors`, broker and result backend from FENNEL_BROKER_URL and FENNEL_RESULT_BACKEND); the
// driver calls actorsApp() for a caller on each run's broker. The same Counter as Pyro4's in
// bench/peers/pyro4_actor.py: incr(k) returns the new count, get() the count, echo(x) its argument, so what is
// measured is the cost of a call, not of the method. A `single` instance (the default mode, one for every proxy),
// maxConcurrency 1 (the default: one call at a time, in arrival order), and no snapshot(): Pyro4 keeps nothing
// either. `bench.echo` is the same echo as a plain task, the reference a call is compared with.
import { Fennel, type FennelOptions } from 'fennel';

export class Counter {
  n = 0;
  incr(k: number): number {
    return (this.n += k);
  }
  get(): number {
    return this.n;
  }
  echo(x: number): number {
    return x;
  }
}

export function actorsApp(options: FennelOptions = {}) {
  const app = new Fennel(options);
  const counter = app.actor('bench.Counter', Counter);
  const echo = app.task('bench.echo', (x: unknown) => x);
  return { app, counter, echo };
}

export const { app, counter, echo } = actorsApp();
