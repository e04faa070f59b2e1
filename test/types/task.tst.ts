// Type-level tests: compiled by `tsc -p tsconfig.json` (the first step of `npm test`), never run.
// Each @ts-expect-error line must fail to compile; if it ever compiles, tsc reports the unused directive.

import { Cache, chain, chord, Fennel, group, type AsyncResult, type BroadcastResult, type CommandResult, type GroupResult } from 'fennel';

const app = new Fennel({ broker: 'memory://types' });
const add = app.task('math.add', (a: number, b: number) => a + b);
const greet = app.task('greet', async (name: string, opts?: { loud?: boolean }) => (opts?.loud ? name.toUpperCase() : name));

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_: T): void {}

export async function checks(): Promise<void> {
  // Arguments are checked against the function's own parameters.
  add.delay(2, 3);
  // @ts-expect-error a string is not a number
  add.delay('x', 3);
  // @ts-expect-error too few arguments
  add.delay(2);
  // @ts-expect-error applyAsync takes the arguments as a tuple
  add.applyAsync([2, '3']);
  // @ts-expect-error unknown call option
  add.applyAsync([2, 3], { queu: 'math' });
  greet.delay('ada');
  greet.delay('ada', { loud: true });
  // @ts-expect-error wrong option type
  greet.delay('ada', { loud: 'yes' });

  // Results carry the function's return type, unwrapped from a promise.
  const sum = await add.delay(2, 3);
  expectType<Equal<typeof sum, number>>(true);
  const text = await greet.delay('ada').get({ timeoutMs: 10 });
  expectType<Equal<typeof text, string>>(true);
  expectType<Equal<ReturnType<typeof add.delay>, AsyncResult<number>>>(true);
  const many = add.delayMany([[1, 2], [3, 4]]);
  expectType<Equal<typeof many, Array<AsyncResult<number>>>>(true);
  // @ts-expect-error each element of delayMany is an argument tuple
  add.delayMany([[1, 'x']]);

  // A broadcast call (or a task registered as a broadcast) returns a BroadcastResult: one result per worker.
  const everywhere = add.applyAsync([1, 2], { broadcast: true });
  expectType<Equal<typeof everywhere, BroadcastResult<number>>>(true);
  const once = add.applyAsync([1, 2], { worker: 'fennel@host1' });
  expectType<Equal<typeof once, AsyncResult<number>>>(true);
  const reload = app.task('cache.reload', (key: string) => key.length, { broadcast: true });
  expectType<Equal<ReturnType<typeof reload.delay>, BroadcastResult<number>>>(true);
  const perWorker = await reload.delay('k').collect({ timeoutMs: 10 });
  expectType<Equal<typeof perWorker.results, Map<string, number>>>(true);
  // @ts-expect-error a broadcast handle is not one result
  const _notOne: AsyncResult<number> = reload.delay('k');
  // @ts-expect-error worker takes a node name
  add.applyAsync([1, 2], { worker: 1 });

  // In-process calls return what the function returns.
  const local = add(2, 3);
  expectType<Equal<typeof local, number>>(true);

  // sendTask is by name: its result type is whatever the caller says (unknown by default).
  const byName = await app.sendTask('math.add', [2, 3]);
  expectType<Equal<typeof byName, unknown>>(true);
  const typed = await app.sendTask<number>('math.add', [2, 3]);
  expectType<Equal<typeof typed, number>>(true);

  // @ts-expect-error unknown app option
  new Fennel({ brokr: 'memory://' });

  // Canvas: a workflow's handle carries its result type (the last step's; a group's members').
  const joined = app.task('join', (xs: number[]) => xs.join(','));
  const chained = chain(add.s(1, 2), add.s(3), joined.s()).applyAsync();
  expectType<Equal<typeof chained, AsyncResult<string>>>(true);
  const grouped = group([add.s(1, 2), add.s(3, 4)]).applyAsync();
  expectType<Equal<typeof grouped, GroupResult<number>>>(true);
  const chorded = chord([add.s(1, 2)], joined.s()).applyAsync();
  expectType<Equal<Awaited<ReturnType<typeof chorded.get>>, string>>(true);
  // @ts-expect-error si() checks its arguments like delay()
  add.si('x', 1);

  // Schedules: a task's arguments are checked like delay()'s; a task by name takes any; a workflow takes none.
  app.schedule('s.sum', { every: 1 }, add, [1, 2]);
  // @ts-expect-error a string is not a number
  app.schedule('s.bad', { every: 1 }, add, ['x', 2]);
  // @ts-expect-error unknown schedule option
  app.schedule('s.option', { every: 1 }, add, [1, 2], { queu: 'maths' });
  // @ts-expect-error catchUp is 'none', 'last' or 'all'
  app.schedule('s.mode', { every: 1 }, add, [1, 2], { catchUp: 'some' });
  app.schedule('s.options', { cron: '30 2 * * *', tz: 'Europe/Paris' }, add, [1, 2], { queue: 'maths', priority: 3, expires: 3600, catchUp: 'last' });
  // @ts-expect-error a task that takes arguments needs them
  app.schedule('s.no-args', { every: 1 }, add);
  // @ts-expect-error an interval has no time zone
  app.schedule('s.every-tz', { every: 1, tz: 'Europe/Paris' }, add, [1, 2]);
  app.schedule('s.by-name', { every: '10m' }, 'proj.tasks.report', ['daily', { full: true }, 3], { kwargs: { verbose: true } });
  app.schedule('s.by-name-bare', { every: 5 }, 'proj.tasks.ping');
  app.schedule('s.chain', { every: 5 }, chain(add.s(1, 2), joined.s()));
  app.schedule('s.chain-options', { every: 5 }, chain(add.s(1, 2), add.s(3)), [], { expires: 60, catchUp: 'all' });
  // @ts-expect-error a workflow takes no args (they are in its signatures)
  app.schedule('s.chain-args', { every: 5 }, chain(add.s(1, 2), add.s(3)), [1]);
  // @ts-expect-error a schedule is { cron, tz? } or { every }
  app.schedule('s.spec', { at: '02:30' }, add, [1, 2]);
  const registered: Fennel = app.schedule('s.chained', { every: 1 }, add, [1, 2]).schedule('s.next', { every: 2 }, 'proj.tasks.ping');
  expectType<Equal<typeof registered.schedules extends ReadonlyMap<string, unknown> ? true : false, true>>(true);

  // Results as arguments (object references): a parameter of type T takes T or an AsyncResult<T>.
  const sortChunk = app.task('refs.sort', (xs: number[]) => [...xs].sort((p, q) => p - q));
  const merge = app.task('refs.merge', (x: number[], y: number[]) => [...x, ...y]);
  const a = sortChunk.delay([3, 1]);
  const b = sortChunk.delay([2]);
  const merged = merge.delay(a, b);
  expectType<Equal<typeof merged, AsyncResult<number[]>>>(true);
  merge.delay(a, [4]);
  merge.applyAsync([a, b], { queue: 'merge' });
  // @ts-expect-error a string is neither a number[] nor an AsyncResult<number[]>
  merge.delay(a, 'x');
  // @ts-expect-error an AsyncResult<number> is not an AsyncResult<number[]>
  merge.delay(add.delay(1, 2), b);
  const data = app.put([4, 2]);
  expectType<Equal<typeof data, AsyncResult<number[]>>>(true);
  merge.delay(data, [3]);

  // Remote control: Celery's reply shapes, typed.
  const pongs = await app.control.ping({ timeoutMs: 1000 });
  expectType<Equal<typeof pongs, Array<Record<string, { ok: 'pong' }>>>>(true);
  const running = await app.control.inspect({ destination: ['fennel@host1'] }).active();
  expectType<Equal<(typeof running)[string][number]['time_start'], number | null>>(true);
  const grown = await app.control.poolGrow(2, { destination: ['fennel@host1'] });
  expectType<Equal<(typeof grown)[number][string], CommandResult>>(true);
  const { missing } = await app.control.broadcast('ping', {}, { destination: ['a@x'] });
  expectType<Equal<typeof missing, string[]>>(true);
  // @ts-expect-error a pool grows by a number of slots
  await app.control.poolGrow('2');
  // @ts-expect-error destination is a list of node names
  await app.control.ping({ destination: 'fennel@host1' });
  // @ts-expect-error matcher is 'glob' or 'pcre'
  await app.control.ping({ pattern: 'fennel@*', matcher: 're' });

  // A memoized task: its key function takes the task's arguments; invalidate() takes them too.
  const square = app.task('math.square', (x: number) => x * x, { cache: { ttlSec: 60, key: (x: number) => `sq:${x}` } });
  const squared = await square.delay(4);
  expectType<Equal<typeof squared, number>>(true);
  await square.invalidate(4);
  // @ts-expect-error invalidate takes the task's own arguments
  await square.invalidate('4');
  // @ts-expect-error ttlSec is a number of seconds
  app.task('math.cube', (x: number) => x ** 3, { cache: { ttlSec: '60' } });
  const cache = new Cache(['lru://?max=100', 'redis://127.0.0.1:6379/0']);
  const user = await cache.wrap('user:1', async () => ({ name: 'Ada' }), { ttlSec: 60 });
  expectType<Equal<typeof user, { name: string }>>(true);
  const maybe = await cache.get<number>('n');
  expectType<Equal<typeof maybe, number | undefined>>(true);
  // @ts-expect-error getMany takes a list of keys
  await cache.getMany('k');
}
