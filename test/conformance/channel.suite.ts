// The channel conformance suite: what `app.channel()` promises (docs/patterns.md#channels), run against every
// engine by test/conformance/channels.test.ts. Each test uses channel names of its own and closes the apps it
// opens; waits poll with generous deadlines, and nothing is asserted on time.
//
// `subscribers(apps, channel)` says how many subscriptions to a channel the broker holds (Redis: PUBSUB NUMSUB,
// one per connection; RabbitMQ: the subscriptions' queues that still exist), or, where the broker keeps no
// subscriber state (SQLite, memory), how many the apps' engines hold: how the suite sees an ended subscription
// unsubscribed on the engine.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ChannelOverflowError, ClosedError, Fennel, PayloadTooLargeError, SerializationError, type FennelOptions, type Subscription } from '../../src/index.ts';
import { NODE_ARGS, ROOT, track, watchLines } from '../support/process.ts';
import { waitFor, within } from './helpers/wait.ts';

export interface ChannelSuiteOptions {
  /** The broker URL for one test. Channel names are unique to each test, so a URL may be shared. */
  url(): string;
  /** Whether a subscriber in another process can receive (false for memory://). */
  crossProcess: boolean;
  /** How many subscriptions to `channel` the broker (or, where it keeps none, the apps' engines) holds. */
  subscribers(apps: readonly Fennel[], channel: string): Promise<number>;
  /** Called once at the end with every channel name used, to delete what the broker keeps of them. */
  cleanUp?(channels: readonly string[]): Promise<void>;
}

const HELPER = join(ROOT, 'test/conformance/helpers/channel-subscriber.ts');
const WAIT_MS = 30_000;

/** Reads `n` values from `subscription`, failing if it ends first or they do not all arrive within WAIT_MS. */
async function take<T>(subscription: Subscription<T>, n: number, what: string): Promise<T[]> {
  const values: T[] = [];
  const reading = (async () => {
    while (values.length < n) {
      const result = await subscription.next();
      if (result.done) throw new Error(`${what}: the subscription ended after ${values.length} of ${n} messages`);
      values.push(result.value);
    }
  })();
  await within(reading, WAIT_MS, `${what} (${n} messages)`);
  return values;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

export function channelSuite(engine: string, options: ChannelSuiteOptions): void {
  describe(`channels on ${engine}`, () => {
    const names: string[] = [];
    after(async () => {
      await options.cleanUp?.(names);
    });

    function channelName(label: string): string {
      const name = `${label}-${randomUUID().slice(0, 8)}`;
      names.push(name);
      return name;
    }

    /** Runs `fn` with `count` apps on one broker URL, and closes them however it ends. */
    async function withApps(count: number, fn: (apps: Fennel[]) => Promise<void>, extra: Omit<FennelOptions, 'broker'> = {}): Promise<void> {
      const url = options.url();
      const apps = Array.from({ length: count }, () => new Fennel({ ...extra, broker: url }));
      try {
        await fn(apps);
      } finally {
        await Promise.all(apps.map((app) => app.close()));
      }
    }

    it('delivers every message to every subscription, in publish order (fanout)', async () => {
      await withApps(3, async ([publisher, first, second]) => {
        const name = channelName('fanout');
        // Two subscriptions in one app (they share its engine's connection) and one in another.
        const subscriptions = [first!.channel<{ n: number }>(name).subscribe(), first!.channel<{ n: number }>(name).subscribe(), second!.channel<{ n: number }>(name).subscribe()];
        await Promise.all(subscriptions.map((s) => s.ready));
        const channel = publisher!.channel<{ n: number }>(name);
        await Promise.all(range(0, 200).map((n) => channel.publish({ n })));
        for (const [i, subscription] of subscriptions.entries()) {
          assert.deepEqual((await take(subscription, 200, `subscription ${i}`)).map((v) => v.n), range(0, 200));
        }
      });
    });

    it('delivers only what is published while the subscription is live', async () => {
      await withApps(2, async ([publisher, subscriber]) => {
        const name = channelName('live');
        const channel = publisher!.channel<number>(name);
        await channel.publish(0); // no one subscribed: nobody ever receives it
        const early = subscriber!.channel<number>(name).subscribe();
        await early.ready;
        await channel.publish(1);
        const late = subscriber!.channel<number>(name).subscribe();
        await late.ready;
        await channel.publish(2);
        assert.deepEqual(await take(early, 2, 'the early subscription'), [1, 2]);
        assert.deepEqual(await take(late, 1, 'the late subscription'), [2], 'the late subscription starts at what was published after it was live');
        await late.return();
        await channel.publish(3);
        assert.deepEqual(await take(early, 1, 'the early subscription'), [3]);
        assert.deepEqual(await late.next(), { value: undefined, done: true }, 'an ended subscription is done');
      });
    });

    it("keeps each publisher's order over thousands of messages", async () => {
      const PER_PUBLISHER = 2_000;
      await withApps(3, async ([p0, p1, subscriber]) => {
        const name = channelName('order');
        const subscription = subscriber!.channel<{ p: number; n: number }>(name).subscribe();
        await subscription.ready;
        const reading = take(subscription, 2 * PER_PUBLISHER, 'both publishers');
        // Neither publisher awaits one publish before the next: the order is the calls'.
        await Promise.all([p0!, p1!].map((app, p) => Promise.all(range(0, PER_PUBLISHER).map((n) => app.channel<{ p: number; n: number }>(name).publish({ p, n })))));
        const values = await reading;
        for (const p of [0, 1]) assert.deepEqual(values.filter((v) => v.p === p).map((v) => v.n), range(0, PER_PUBLISHER), `publisher ${p}'s messages, in its order`);
      });
    });

    it("ends a subscription that falls bufferSize behind with ChannelOverflowError (overflow: 'error'), and unsubscribes it", async () => {
      await withApps(3, async ([publisher, slowApp, otherApp]) => {
        const name = channelName('overflow');
        const slow = slowApp!.channel<number>(name).subscribe({ bufferSize: 10 });
        const other = otherApp!.channel<number>(name).subscribe();
        await Promise.all([slow.ready, other.ready]);
        assert.equal(slow.overflow, 'error', 'the default policy');
        const channel = publisher!.channel<number>(name);
        await Promise.all(range(0, 10).map((n) => channel.publish(n)));
        await waitFor(() => slow.buffered === 10, { what: 'a full buffer', timeoutMs: WAIT_MS });
        await channel.publish(10);
        // The eleventh message overflows the buffer: the subscription ends and lets go of what it held.
        await waitFor(() => slow.buffered === 0, { what: 'the overflow', timeoutMs: WAIT_MS });
        await assert.rejects(slow.next(), (error: unknown) => {
          assert.ok(error instanceof ChannelOverflowError);
          assert.equal(error.code, 'FENNEL_CHANNEL_OVERFLOW');
          assert.equal(error.channel, name);
          assert.equal(error.bufferSize, 10);
          return true;
        });
        assert.deepEqual(await slow.next(), { value: undefined, done: true }, 'thrown once, then done');
        await waitFor(async () => (await options.subscribers([slowApp!, otherApp!], name)) === 1, { what: 'the slow subscription unsubscribed', timeoutMs: WAIT_MS });
        assert.deepEqual(await take(other, 11, 'the other subscription'), range(0, 11), 'another subscription is not affected');
      });
    });

    it("keeps the newest bufferSize messages with overflow: 'drop-oldest', and counts what it dropped", async () => {
      await withApps(2, async ([publisher, subscriber]) => {
        const name = channelName('drop');
        // Channel options are the defaults of its subscriptions.
        const subscription = subscriber!.channel<number>(name, { bufferSize: 10, overflow: 'drop-oldest' }).subscribe();
        await subscription.ready;
        assert.equal(subscription.bufferSize, 10);
        assert.equal(subscription.overflow, 'drop-oldest');
        const channel = publisher!.channel<number>(name);
        await Promise.all(range(0, 25).map((n) => channel.publish(n)));
        await waitFor(() => subscription.dropped === 15, { what: '15 dropped messages', timeoutMs: WAIT_MS });
        assert.equal(subscription.buffered, 10);
        assert.deepEqual(await take(subscription, 10, 'the buffered messages'), range(15, 25), 'the newest ten, in order');
        await channel.publish(25);
        assert.deepEqual(await take(subscription, 1, 'the next message'), [25], 'it goes on receiving');
        assert.equal(subscription.dropped, 15);
      });
    });

    it('unsubscribes a subscription that stops mid-stream (break, abort); the others keep receiving', async () => {
      await withApps(4, async ([publisher, breakingApp, abortingApp, steadyApp]) => {
        const name = channelName('stop');
        const breaking = breakingApp!.channel<number>(name).subscribe();
        const controller = new AbortController();
        const aborting = abortingApp!.channel<number>(name).subscribe({ signal: controller.signal });
        const steady = steadyApp!.channel<number>(name).subscribe();
        await Promise.all([breaking.ready, aborting.ready, steady.ready]);
        const subscribed = [breakingApp!, abortingApp!, steadyApp!];
        assert.equal(await options.subscribers(subscribed, name), 3);

        const broke = (async () => {
          const seen: number[] = [];
          for await (const n of breaking) {
            seen.push(n);
            if (seen.length === 5) break;
          }
          return seen;
        })();
        const aborted = (async () => {
          const seen: number[] = [];
          for await (const n of aborting) {
            seen.push(n);
            if (seen.length === 5) controller.abort();
          }
          return seen;
        })();
        const channel = publisher!.channel<number>(name);
        await Promise.all(range(0, 5).map((n) => channel.publish(n)));
        // Both loops end cleanly (no error), having read the first five.
        assert.deepEqual(await within(broke, WAIT_MS, 'the loop that breaks'), range(0, 5));
        assert.deepEqual(await within(aborted, WAIT_MS, 'the loop whose signal aborts'), range(0, 5));
        await waitFor(async () => (await options.subscribers(subscribed, name)) === 1, { what: 'two subscriptions unsubscribed', timeoutMs: WAIT_MS });
        await Promise.all(range(5, 20).map((n) => channel.publish(n)));
        assert.deepEqual(await take(steady, 20, 'the steady subscription'), range(0, 20));
        assert.deepEqual(await aborting.next(), { value: undefined, done: true });
      });
    });

    it('refuses a value JSON cannot carry, or one over maxPayloadBytes, at publish, before anything is sent', async () => {
      await withApps(
        2,
        async ([publisher, subscriber]) => {
          const name = channelName('bad');
          const subscription = subscriber!.channel<unknown>(name).subscribe();
          await subscription.ready;
          const channel = publisher!.channel<unknown>(name);
          await assert.rejects(channel.publish(() => 1), SerializationError);
          await assert.rejects(channel.publish({ price: 10n }), (error: unknown) => error instanceof SerializationError && /message\.price/.test(error.message));
          const cycle: Record<string, unknown> = {};
          cycle['self'] = cycle;
          await assert.rejects(channel.publish(cycle), SerializationError);
          await assert.rejects(channel.publish({ blob: 'x'.repeat(5_000) }), (error: unknown) => error instanceof PayloadTooLargeError && error.limit === 4_096);
          // The codec of task arguments: Dates and Buffers come back as themselves.
          const good = { at: new Date('2026-01-02T03:04:05.678Z'), bytes: Buffer.from('hi'), text: 'é' };
          await channel.publish(good);
          assert.deepEqual(await take(subscription, 1, 'the first message'), [good], 'nothing refused reached the subscriber');
        },
        { maxPayloadBytes: 4_096 },
      );
    });

    it("keeps channels apart: a subscription never sees another channel's messages", async () => {
      await withApps(2, async ([publisher, subscriber]) => {
        const base = channelName('apart');
        // Names that are prefixes of each other, or differ in one separator.
        const channels = [base, `${base}.b`, `${base}:b`, `${base}b`];
        for (const name of channels.slice(1)) names.push(name);
        const subscriptions = channels.map((name) => subscriber!.channel<string>(name).subscribe());
        await Promise.all(subscriptions.map((s) => s.ready));
        for (let round = 0; round < 3; round++) {
          for (const name of channels) await publisher!.channel<string>(name).publish(`${name}#${round}`);
        }
        for (const [i, name] of channels.entries()) {
          assert.deepEqual(await take(subscriptions[i]!, 3, name), [0, 1, 2].map((round) => `${name}#${round}`));
        }
        // Nothing else is waiting: a marker on each channel is the next message each one reads.
        for (const name of channels) await publisher!.channel<string>(name).publish(`${name}#end`);
        for (const [i, name] of channels.entries()) assert.deepEqual(await take(subscriptions[i]!, 1, name), [`${name}#end`]);
      });
    });

    it('ends every subscription when the app closes, and refuses use afterwards', async () => {
      const url = options.url();
      const app = new Fennel({ broker: url });
      const name = channelName('close');
      const channel = app.channel<number>(name);
      const subscription = channel.subscribe();
      await subscription.ready;
      const waiting = subscription.next();
      await app.close();
      assert.deepEqual(await within(waiting, WAIT_MS, 'the pending next()'), { value: undefined, done: true });
      assert.throws(() => app.channel(name), ClosedError);
      assert.throws(() => channel.subscribe(), ClosedError);
      await assert.rejects(channel.publish(1), ClosedError);
    });

    it('delivers to a subscriber in another process', { skip: options.crossProcess ? false : 'the engine does not cross processes' }, async () => {
      const url = options.url();
      const name = channelName('process');
      const COUNT = 50;
      const child = watchLines(
        track(spawn(process.execPath, [...NODE_ARGS, HELPER, url, name, String(COUNT)], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] })),
      );
      const app = new Fennel({ broker: url });
      try {
        await child.waitForLine(/^ready$/, WAIT_MS);
        const channel = app.channel<{ n: number; at: Date }>(name);
        const values = range(0, COUNT).map((n) => ({ n, at: new Date(1_700_000_000_000 + n) }));
        for (const value of values) await channel.publish(value);
        const line = await child.waitForLine(/^received /, WAIT_MS);
        // Dates travel tagged (protocol/json.ts); the helper printed them back as JSON text.
        assert.deepEqual(JSON.parse(line.slice('received '.length)), values.map((v) => ({ n: v.n, at: v.at.toISOString() })));
        assert.deepEqual(await within(child.exited, WAIT_MS, 'the subscriber process exiting'), { code: 0, signal: null });
      } finally {
        if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
        await app.close();
      }
    });
  });
}
