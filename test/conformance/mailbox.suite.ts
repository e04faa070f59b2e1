// The mailbox conformance suite: what a remote-control mailbox engine promises (src/control/mailbox.ts), and the
// client's gathering written once above it (src/control/client.ts), run against every engine by
// test/conformance/mailbox.test.ts. A "worker" here is a listener that answers as a worker's command table will:
// it parses the request, runs it only if it is addressed (isAddressedTo), and replies when a reply is wanted.
// Each test opens engines of its own and closes them; waits poll with generous deadlines, nothing is asserted on
// time (a gathering's timeout only bounds how long a test waits for replies that must not come).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, it } from 'node:test';
import { sendControl } from '../../src/control/client.ts';
import type { IncomingRequest, MailboxEngine } from '../../src/control/mailbox.ts';
import { controlReply, controlRequest, isAddressedTo, parseControlRequest, replyHeaders, requestHeaders, type ControlRequest } from '../../src/control/protocol.ts';
import { sleep, waitFor } from './helpers/wait.ts';

export interface MailboxSuiteOptions {
  /** A new engine on the broker the suite's engines share (two calls: a client's and a worker's, say). */
  open(): Promise<MailboxEngine> | MailboxEngine;
}

/** How long a test waits before checking that something did not arrive. */
const GRACE_MS = 500;
/** The most a gathering may take: it ends on its limit, so this only bounds a test that fails. */
const WAIT_MS = 30_000;

export function mailboxSuite(name: string, options: MailboxSuiteOptions): void {
  describe(`mailbox conformance: ${name}`, () => {
    const opened: MailboxEngine[] = [];
    const stops: Array<() => Promise<void>> = [];
    const open = async (): Promise<MailboxEngine> => {
      const engine = await options.open();
      opened.push(engine);
      return engine;
    };
    afterEach(async () => {
      for (const stop of stops.splice(0)) await stop().catch(() => {});
      for (const engine of opened.splice(0)) await engine.close().catch(() => {});
    });

    /** A worker named `node` on `engine`: answers ping with pong and echo with its arguments, when addressed. */
    async function worker(engine: MailboxEngine, node: string, seen: ControlRequest[] = []): Promise<ControlRequest[]> {
      const stop = await engine.listen(node, ({ body }: IncomingRequest) => {
        const request = parseControlRequest(body);
        if (!isAddressedTo(request, node)) return;
        seen.push(request);
        if (!request.reply_to) return;
        const result = request.method === 'ping' ? { ok: 'pong' } : request.method === 'echo' ? request.arguments : { error: `unknown command ${request.method}` };
        void engine.reply(request.reply_to, controlReply(node, result), replyHeaders(request.ticket, 1));
      });
      stops.push(stop);
      return seen;
    }

    it('a broadcast reaches every listener once, body and headers as sent', async () => {
      const [client, w1, w2] = [await open(), await open(), await open()];
      const got: IncomingRequest[][] = [[], []];
      stops.push(await w1.listen('a@test', (r) => got[0]!.push(r)));
      stops.push(await w2.listen('b@test', (r) => got[1]!.push(r)));
      const request = controlRequest('echo', { n: 1, text: 'é ✓' }, { destination: ['a@test'] });
      const headers = requestHeaders(7, 1);
      await client.broadcast(request, headers);
      await waitFor(() => got.every((g) => g.length === 1), { what: 'the request at both listeners' });
      await sleep(GRACE_MS);
      for (const g of got) {
        assert.equal(g.length, 1, 'once');
        assert.deepEqual(g[0]!.body, request);
        assert.deepEqual(g[0]!.headers['clock'], 7);
        assert.equal(typeof g[0]!.headers['expires'], 'number');
      }
    });

    it('a listener that stopped receives nothing more', async () => {
      const [client, w] = [await open(), await open()];
      const got: IncomingRequest[] = [];
      const stop = await w.listen('a@test', (r) => got.push(r));
      await client.broadcast(controlRequest('ping', {}), requestHeaders(1, 1));
      await waitFor(() => got.length === 1, { what: 'the first request' });
      await stop();
      await client.broadcast(controlRequest('ping', {}), requestHeaders(2, 1));
      await sleep(GRACE_MS);
      assert.equal(got.length, 1);
    });

    it('a reply reaches the open reply queue of its oid only; one to a queue not open, or closed, is dropped', async () => {
      const [client, w] = [await open(), await open()];
      const [oidA, oidB] = [randomUUID(), randomUUID()];
      const [a, b] = [await client.openReplies(oidA), await client.openReplies(oidB)];
      await w.reply({ exchange: 'reply.celery.pidbox', routing_key: oidA }, { 'w@test': { ok: 1 } }, { ticket: 't', clock: 3 });
      await w.reply({ exchange: 'reply.celery.pidbox', routing_key: randomUUID() }, { 'w@test': { ok: 'nobody' } }, { ticket: 't', clock: 3 });
      assert.deepEqual(await a.next(10_000), { body: { 'w@test': { ok: 1 } }, headers: { ticket: 't', clock: 3 } });
      assert.equal(await b.next(GRACE_MS), undefined, "another oid's queue gets nothing");
      await a.close();
      await w.reply({ exchange: 'reply.celery.pidbox', routing_key: oidA }, { 'w@test': { ok: 2 } }, { ticket: 't', clock: 4 });
      const again = await client.openReplies(oidA);
      assert.equal(await again.next(GRACE_MS), undefined, 'a reply sent while the queue was closed is gone');
      await again.close();
      await b.close();
    });

    it('the client gathers one reply per destination and names the destination that did not answer', async () => {
      const [client, w1, w2] = [await open(), await open(), await open()];
      const seen1 = await worker(w1, 'a@test');
      const seen2 = await worker(w2, 'b@test');
      // limit 2: the gathering ends with the two answers; the time only bounds a test that fails.
      const outcome = await sendControl(client, { method: 'ping', destination: ['a@test', 'b@test', 'ghost@test'], limit: 2, timeoutMs: WAIT_MS });
      assert.deepEqual(
        outcome.replies.sort((x, y) => x.node.localeCompare(y.node)),
        [
          { node: 'a@test', result: { ok: 'pong' } },
          { node: 'b@test', result: { ok: 'pong' } },
        ],
      );
      assert.deepEqual(outcome.missing, ['ghost@test']);
      assert.equal(seen1.length + seen2.length, 2);
    });

    it('without a destination every worker answers; a glob pattern selects by name; a cast gets no reply but runs', async () => {
      const [client, w1, w2] = [await open(), await open(), await open()];
      const seen1 = await worker(w1, 'fennel@one');
      const seen2 = await worker(w2, 'celery@two');
      const all = await sendControl(client, { method: 'echo', arguments: { x: 1 }, limit: 2, timeoutMs: WAIT_MS });
      assert.deepEqual(all.replies.map((r) => r.node).sort(), ['celery@two', 'fennel@one']);
      assert.deepEqual(all.replies[0]!.result, { x: 1 });
      assert.deepEqual(all.missing, []);
      const globbed = await sendControl(client, { method: 'ping', pattern: 'fennel@*', matcher: 'glob', limit: 1, timeoutMs: WAIT_MS });
      assert.deepEqual(globbed.replies, [{ node: 'fennel@one', result: { ok: 'pong' } }]);
      const cast = await sendControl(client, { method: 'ping', destination: ['celery@two'], reply: false });
      assert.deepEqual(cast, { replies: [], missing: ['celery@two'] });
      await waitFor(() => seen2.length === 2, { what: 'the cast run by its destination (after the echo)' });
      assert.equal(seen1.length, 2);
      assert.equal(seen2.at(-1)!.reply_to, undefined, 'a cast carries no reply_to');
    });

    it("replies to another request (another ticket) are not this request's", async () => {
      const [client, w] = [await open(), await open()];
      const stop = await w.listen('a@test', ({ body }) => {
        const request = parseControlRequest(body);
        if (!request.reply_to) return;
        void w.reply(request.reply_to, controlReply('a@test', { ok: 'stale' }), replyHeaders('another-ticket', 1));
        void w.reply(request.reply_to, controlReply('a@test', { ok: 'pong' }), replyHeaders(request.ticket, 2));
      });
      stops.push(stop);
      const outcome = await sendControl(client, { method: 'ping', destination: ['a@test'], timeoutMs: WAIT_MS });
      assert.deepEqual(outcome, { replies: [{ node: 'a@test', result: { ok: 'pong' } }], missing: [] });
    });
  });
}
