// The app layer against the memory engines and an in-process async worker: configuration, routing,
// validation at the call, AsyncResult semantics and the executor's outcomes.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pino from 'pino';
import { MemoryBackend } from '../../../src/backends/memory.ts';
import { waitFor } from '../../support/process.ts';
import { AsyncResult, ConfigError, Fennel, PayloadTooLargeError, RemoteTaskError, SerializationError, TimeoutError, Worker, currentTask } from '../../../src/index.ts';

function memoryApp(options: ConstructorParameters<typeof Fennel>[0] = {}): Fennel {
  return new Fennel({ broker: `memory://${randomUUID()}`, ...options });
}

async function withWorker<T>(app: Fennel, fn: (worker: Worker) => Promise<T>, queues?: string[]): Promise<T> {
  const worker = new Worker(app, { pool: 'async', concurrency: 4, logger: pino({ level: 'silent' }), ...(queues ? { queues } : {}) });
  await worker.start();
  try {
    return await fn(worker);
  } finally {
    await worker.stop(1);
  }
}

describe('configuration', () => {
  it('rejects an unknown option with a suggestion', () => {
    assert.throws(() => new Fennel({ brokr: 'memory://' } as never), (e: unknown) => e instanceof ConfigError && /did you mean 'broker'/.test(e.message));
  });

  it('takes options from the constructor, then the environment, then defaults', () => {
    const saved = process.env['FENNEL_DEFAULT_QUEUE'];
    process.env['FENNEL_DEFAULT_QUEUE'] = 'from-env';
    try {
      assert.equal(new Fennel({ broker: 'memory://' }).config.defaultQueue, 'from-env');
      assert.equal(new Fennel({ broker: 'memory://', defaultQueue: 'mine' }).config.defaultQueue, 'mine');
    } finally {
      if (saved === undefined) delete process.env['FENNEL_DEFAULT_QUEUE'];
      else process.env['FENNEL_DEFAULT_QUEUE'] = saved;
    }
    const app = new Fennel({ broker: 'memory://' });
    assert.equal(app.config.backend, 'memory://', 'the backend defaults to the broker URL');
    assert.equal(app.config.visibilityTimeoutSec, 30);
  });

  it('names the source of an invalid value', () => {
    assert.throws(() => new Fennel({ broker: 'not a url' }), /option 'broker' is invalid/);
    const saved = process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'];
    process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = 'soon';
    try {
      assert.throws(() => new Fennel({ broker: 'memory://' }), /environment variable FENNEL_VISIBILITY_TIMEOUT_SEC is invalid/);
    } finally {
      if (saved === undefined) delete process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'];
      else process.env['FENNEL_VISIBILITY_TIMEOUT_SEC'] = saved;
    }
  });

  it('refuses an unknown URL scheme when the app is made (test/unit/app/urls.test.ts checks every part)', () => {
    assert.throws(() => new Fennel({ broker: 'carrier-pigeon://coop' }), /option 'broker' is invalid: no transport for carrier-pigeon:\/\/coop/);
  });

  it('refuses two tasks with one name', () => {
    const app = memoryApp();
    app.task('dup', () => 1);
    assert.throws(() => app.task('dup', () => 2), /already registered/);
  });
});

describe('producing', () => {
  it('routes by pattern, and a per-call queue wins', () => {
    const app = memoryApp({ routes: { 'math.*': { queue: 'math' }, 'io.fetch': { queue: 'io', priority: 7 } } });
    assert.equal(app.queueFor('math.add', {}), 'math');
    assert.equal(app.queueFor('io.fetch', {}), 'io');
    assert.equal(app.queueFor('other', {}), 'celery');
    assert.equal(app.queueFor('math.add', { queue: 'urgent' }), 'urgent');
  });

  it('puts the route, countdown, expiry and priority on the wire', async () => {
    const app = memoryApp({ routes: { 'math.*': { queue: 'math' } } });
    const add = app.task('math.add', (a: number, b: number) => a + b);
    const result = add.applyAsync([2, 3], { countdown: 60, expires: 120, priority: 5, taskId: 'fixed-id', timeLimitSec: 30, softTimeLimitSec: 20 });
    await result.sent;
    assert.equal(result.id, 'fixed-id');
    const stats = await app.transport.stats();
    assert.deepEqual(stats.map((s) => [s.queue, s.scheduled]), [['math', 1]]);
    const handedOut: unknown[] = [];
    const sub = await app.transport.consume({ queues: ['math'], prefetch: 1 }, (d) => handedOut.push(d));
    await new Promise((r) => setTimeout(r, 20));
    await sub.cancel();
    assert.equal(handedOut.length, 0, 'a countdown message is not handed out early');
  });

  it('refuses arguments JSON cannot carry, at the call, enqueuing nothing', async () => {
    const app = memoryApp();
    const take = app.task('take', (_value: unknown) => null);
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    for (const bad of [() => 1, Symbol('s'), 10n, new Map(), new Set([1]), cycle, [undefined], Number.NaN, new (class Point {})()]) {
      assert.throws(() => take.delay(bad), SerializationError, `refuses ${String(typeof bad)}`);
    }
    assert.equal(await app.transport.depth('celery'), 0);
  });

  it('carries Dates and Buffers with kombu tags', async () => {
    const app = memoryApp();
    const echo = app.task('echo', (d: Date, b: Buffer) => ({ iso: d.toISOString(), text: b.toString() }));
    await withWorker(app, async () => {
      const value = await echo.delay(new Date('2026-01-02T03:04:05.678Z'), Buffer.from('hi')).get({ timeoutMs: 5000 });
      assert.deepEqual(value, { iso: '2026-01-02T03:04:05.678Z', text: 'hi' });
    });
  });

  it('refuses a payload over the limit at the call', () => {
    const app = memoryApp({ maxPayloadBytes: 1000 });
    const take = app.task('take', (_s: string) => null);
    assert.throws(() => take.delay('x'.repeat(2000)), PayloadTooLargeError);
  });

  it('measures the payload limit in utf-8 bytes, not characters', async () => {
    const app = memoryApp({ maxPayloadBytes: 1000 });
    const take = app.task('take', (_s: string) => null);
    // About 550 characters either way: 'é' is 2 bytes, '✓' 3.
    assert.throws(() => take.delay('é'.repeat(480)), (error: unknown) => error instanceof PayloadTooLargeError && error.bytes > 1000);
    assert.throws(() => take.delay('✓'.repeat(320)), PayloadTooLargeError);
    take.delay('é'.repeat(400));
    await app.close();
  });

  it('sends reply_to, the app oid, as Celery does', async () => {
    const app = memoryApp();
    let seen: string | undefined;
    const sub = await app.transport.consume({ queues: ['celery'], prefetch: 1 }, (d) => {
      seen = d.message.properties.reply_to;
      void d.ack();
    });
    await app.sendTask('anything', []).sent;
    await new Promise((r) => setTimeout(r, 10));
    await sub.cancel();
    assert.equal(seen, app.oid);
  });
});

describe('AsyncResult', () => {
  it('is awaitable and typed by the task', async () => {
    const app = memoryApp();
    const add = app.task('add', (a: number, b: number) => a + b);
    await withWorker(app, async () => {
      assert.equal(await add.delay(2, 3), 5);
    });
  });

  it('times out naming the task and the wait', async () => {
    const app = memoryApp();
    const result = app.sendTask('nobody.runs.this', []);
    await assert.rejects(result.get({ timeoutMs: 50 }), (e: unknown) => e instanceof TimeoutError && /nobody\.runs\.this .* not ready after 50 ms/.test(e.message));
    assert.equal(await result.status(), 'PENDING');
  });

  it('re-throws a task error as RemoteTaskError with name, message and stack', async () => {
    const app = memoryApp();
    const boom = app.task('boom', () => {
      throw new RangeError('too far');
    });
    await withWorker(app, async () => {
      const result = boom.delay();
      await assert.rejects(result.get({ timeoutMs: 5000 }), (e: unknown) => {
        assert.ok(e instanceof RemoteTaskError);
        assert.equal(e.remoteName, 'RangeError');
        assert.equal(e.remoteMessage, 'too far');
        assert.match(e.remoteStack ?? '', /RangeError: too far/);
        return true;
      });
      assert.equal(await result.failed(), true);
      assert.equal(await result.ready(), true);
      assert.equal(await result.successful(), false);
    });
  });

  it('returns a result that arrives while its publish is still unconfirmed', async () => {
    // RabbitMQ confirms a persistent message once it is on disk or acked: for a quick task, after its result.
    const backend = new MemoryBackend();
    await backend.store({ task_id: 'quick', status: 'SUCCESS', result: 7, traceback: null, children: [], date_done: null });
    const unconfirmed = new Promise<void>(() => {});
    assert.equal(await new AsyncResult<number>('quick', () => backend, unconfirmed).get({ timeoutMs: 5000 }), 7);
  });

  it('rejects with the publish error, not a timeout, when its message could not be sent', async () => {
    const backend = new MemoryBackend();
    const failed = Promise.reject(new Error('broker said no'));
    await assert.rejects(new AsyncResult('lost', () => backend, failed).get({ timeoutMs: 60_000 }), /broker said no/);
  });

  it('rejects every result of a failed publish, the ones waited for before it failed too', async () => {
    const backend = new MemoryBackend();
    let fail!: (error: Error) => void;
    const sent = new Promise<void>((_resolve, reject) => (fail = reject));
    const results = ['x', 'y', 'z'].map((id) => new AsyncResult(id, () => backend, sent));
    const early = results.slice(0, 2).map((result) => result.get({ timeoutMs: 60_000 }));
    const withSignal = results[2]!.get({ timeoutMs: 60_000, signal: new AbortController().signal });
    fail(new Error('broker said no'));
    for (const got of [...early, withSignal]) await assert.rejects(got, /broker said no/);
    await assert.rejects(results[0]!.get({ timeoutMs: 60_000 }), /broker said no/);
  });

  it('rejects with the abort reason when its signal aborts', async () => {
    const app = memoryApp();
    const controller = new AbortController();
    const pending = app.sendTask('never', []).get({ signal: controller.signal });
    controller.abort(new Error('user gave up'));
    await assert.rejects(pending, /user gave up/);
  });
});

describe('executing (async pool, in process)', () => {
  it('gives tasks their context and stores progress', async () => {
    const app = memoryApp();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const job = app.task('job', async () => {
      const ctx = currentTask();
      await ctx.progress({ step: 1 });
      await gate;
      return { id: ctx.id, name: ctx.name, retries: ctx.retries, queue: ctx.queue };
    });
    await withWorker(app, async () => {
      const result = job.delay();
      await waitFor(async () => (await result.status()) === 'PROGRESS', 'PROGRESS to be stored', 5000);
      assert.deepEqual(await result.info(), { step: 1 });
      release();
      assert.deepEqual(await result.get({ timeoutMs: 5000 }), { id: result.id, name: 'job', retries: 0, queue: 'celery' });
    });
  });

  it('stores STARTED for a task still running 5 ms after it began, and none for one that ended sooner', async () => {
    const app = memoryApp();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const quick = app.task('quick', () => 1);
    const slow = app.task('slow', async () => {
      await gate;
      return 2;
    });
    const backend = app.backend;
    const store = backend.store.bind(backend);
    const stored: string[] = [];
    backend.store = (meta) => {
      stored.push(`${meta.name} ${meta.status}`);
      return store(meta);
    };
    await withWorker(app, async () => {
      assert.equal(await quick.delay().get({ timeoutMs: 5000 }), 1);
      const running = slow.delay();
      await waitFor(async () => (await running.status()) === 'STARTED', 'STARTED to be stored', 5000);
      release();
      assert.equal(await running.get({ timeoutMs: 5000 }), 2);
    });
    assert.deepEqual(stored, ['quick SUCCESS', 'slow STARTED', 'slow SUCCESS']);
  });

  it('retries with ctx.retry() and gives up after maxRetries', async () => {
    const app = memoryApp();
    const flaky = app.task('flaky', () => {
      const ctx = currentTask();
      if (ctx.retries < 2) ctx.retry({ reason: 'not yet' });
      return ctx.retries;
    });
    const hopeless = app.task('hopeless', () => currentTask().retry({ reason: 'never' }), { maxRetries: 2 });
    await withWorker(app, async () => {
      assert.equal(await flaky.delay().get({ timeoutMs: 5000 }), 2);
      await assert.rejects(hopeless.delay().get({ timeoutMs: 5000 }), (e: unknown) => e instanceof RemoteTaskError && e.remoteName === 'MaxRetriesExceededError');
    });
  });

  it('runs an in-process call with a context too', () => {
    const app = memoryApp();
    const who = app.task('who', () => currentTask().name);
    assert.equal(who(), 'who');
  });

  it('stores NotRegistered for an unknown task and dead-letters it', async () => {
    const app = memoryApp();
    app.task('math.add', (a: number, b: number) => a + b);
    await withWorker(app, async () => {
      await assert.rejects(app.sendTask('math.ad', [1, 2]).get({ timeoutMs: 5000 }), (e: unknown) => e instanceof RemoteTaskError && e.remoteName === 'NotRegistered' && e.remoteModule === 'celery.exceptions');
      const [letter] = await app.transport.listDeadLetters();
      assert.match(letter!.reason, /NotRegistered: math\.ad — did you mean 'math\.add'\?/);
    });
  });

  it('revokes an expired task without running it', async () => {
    const app = memoryApp();
    let ran = false;
    const late = app.task('late', () => (ran = true));
    const result = late.applyAsync([], { expires: new Date(Date.now() - 1000) });
    await withWorker(app, async () => {
      await assert.rejects(result.get({ timeoutMs: 5000 }), (e: unknown) => e instanceof RemoteTaskError && e.state === 'REVOKED');
    });
    assert.equal(ran, false);
  });

  it('refuses to be used after close', async () => {
    const app = memoryApp();
    await app.close();
    assert.throws(() => app.sendTask('x', []), /closed/);
  });
});
