// Type-level tests of actor proxies (src/actors/actor.ts): compiled by `tsc -p tsconfig.json`, never run. Every
// line marked to expect an error must fail to compile; if it ever compiles, tsc reports the unused directive.

import { Fennel, type AsyncResult } from 'fennel';

const app = new Fennel({ broker: 'memory://types' });

const Counter = app.actor('Counter', class Counter {
  n = 0;
  constructor(readonly start: number) {}
  incr(k: number) {
    return (this.n += k);
  }
  async label(prefix: string, opts?: { upper?: boolean }): Promise<string> {
    return opts?.upper ? `${prefix}${this.n}`.toUpperCase() : `${prefix}${this.n}`;
  }
  snapshot() {
    return this.n;
  }
  restore(n: number) {
    this.n = n;
  }
});

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_: T): void {}

export async function checks(): Promise<void> {
  const c = await Counter.create({ name: 'hits', args: [0], meta: { region: 'eu' } });
  // @ts-expect-error the constructor takes a number
  await Counter.create({ args: ['zero'] });
  // @ts-expect-error meta values are strings
  await Counter.create({ meta: { region: 1 } });

  // Methods keep their parameters; results are promises of the unwrapped return type.
  const n = await c.incr(5);
  expectType<Equal<typeof n, number>>(true);
  // @ts-expect-error a string is not a number
  await c.incr('x');
  // @ts-expect-error too few arguments
  await c.incr();
  const label = await c.label('n=', { upper: true });
  expectType<Equal<typeof label, string>>(true);

  // .async gives the AsyncResult at once; .oneway returns nothing.
  const pending = c.incr.async(1);
  expectType<Equal<typeof pending, AsyncResult<number>>>(true);
  expectType<Equal<ReturnType<typeof c.incr.oneway>, void>>(true);
  // @ts-expect-error .async checks its arguments too
  c.incr.async('1');

  // Fields, the snapshot hooks and unknown names are not on the proxy.
  // @ts-expect-error a field, not a method
  void c.n;
  // @ts-expect-error the snapshot hook is Fennel's, not a remote method
  void c.snapshot;
  // @ts-expect-error no such method
  void c.decr;

  // The handle's own members.
  expectType<Equal<typeof c.id, string>>(true);
  expectType<Equal<typeof c.name, string>>(true);
  await c.close();
  await c.destroy();

  const again = await Counter.lookup('hits');
  expectType<Equal<Awaited<ReturnType<typeof again.incr>>, number>>(true);
}
