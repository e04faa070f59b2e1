// The NATS engines' request path (src/clients/nats/requests.ts, jetstream.ts publishStored/getStored) against the
// shared NATS server: replies matched to their requests, no responders and silence as errors within the bound, a
// closed connection failing what is out, and JetStream's answers read as the client reads them.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { NatsLink, type NatsHandles } from '../../../src/clients/nats/connection.ts';
import { getStored, headers, isNoResponders, isWrongLastSequence, publishStored } from '../../../src/clients/nats/jetstream.ts';
import { Replies } from '../../../src/clients/nats/requests.ts';
import { natsSkipReason, natsUrlForTest } from '../../support/nats.ts';

const URL = natsUrlForTest('unit_requests');
const skip = await natsSkipReason();
const STREAM = 'UNIT_REQUESTS';

describe('NATS requests (Replies) and the JetStream steps on them', { skip }, () => {
  let link: NatsLink;
  let handles: NatsHandles;

  before(async () => {
    link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel unit requests' });
    handles = await link.handles();
    await handles.jsm.streams.delete(STREAM).catch(() => false);
    await handles.jsm.streams.add({ name: STREAM, subjects: ['unit_requests.>'] });
  });
  after(async () => {
    await handles.jsm.streams.delete(STREAM).catch(() => false);
    await link.close();
  });

  it('matches 500 concurrent replies to their requests', async () => {
    const subject = `unit_requests_echo.${randomUUID()}`;
    const sub = handles.nc.subscribe(subject, { callback: (_error, msg) => void msg.respond(`re:${msg.string()}`) });
    await handles.nc.flush();
    const answers = await Promise.all(Array.from({ length: 500 }, (_, i) => handles.replies.request(subject, String(i), 5_000)));
    assert.deepEqual(
      answers.map((m) => m.string()),
      Array.from({ length: 500 }, (_, i) => `re:${i}`),
    );
    sub.unsubscribe();
  });

  it('no subscriber is a "no responders" error at once; a subscriber that never answers is a timeout within the bound', async () => {
    const started = Date.now();
    const none = await handles.replies.request(`unit_requests_nobody.${randomUUID()}`, 'x', 5_000).catch((error: unknown) => error);
    assert.ok(isNoResponders(none), `no responders: ${String(none)}`);
    assert.ok(Date.now() - started < 2_000);
    const subject = `unit_requests_silent.${randomUUID()}`;
    const sub = handles.nc.subscribe(subject, { callback: () => {} });
    await handles.nc.flush();
    const t0 = Date.now();
    await assert.rejects(handles.replies.request(subject, 'x', 300), /timeout/i);
    const took = Date.now() - t0;
    assert.ok(took >= 290 && took < 2_000, `timed out after ${took} ms`);
    sub.unsubscribe();
  });

  it('a closed connection fails the requests that are out, and those made after', async () => {
    const other = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel unit requests (closed)' });
    const { nc } = await other.handles();
    const replies = new Replies(nc);
    const subject = `unit_requests_silent.${randomUUID()}`;
    handles.nc.subscribe(subject, { callback: () => {}, max: 1 });
    await handles.nc.flush();
    const out = replies.request(subject, 'x', 30_000);
    await nc.close();
    await assert.rejects(out);
    await assert.rejects(replies.request(subject, 'x', 30_000));
    await other.close();
  });

  it('publishStored resolves with the stream sequence, says duplicate for a repeated Nats-Msg-Id, and throws what isWrongLastSequence reads', async () => {
    const subject = `unit_requests.${randomUUID()}`;
    const first = await publishStored(handles.replies, subject, 'a', 5_000);
    assert.ok(first.seq > 0);
    assert.equal(first.duplicate, false);
    const withId = () => {
      const h = headers();
      h.set('Nats-Msg-Id', `id-${subject}`);
      return h;
    };
    const once = await publishStored(handles.replies, subject, 'b', 5_000, withId());
    const again = await publishStored(handles.replies, subject, 'b', 5_000, withId());
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, once.seq);
    const expect = headers();
    expect.set('Nats-Expected-Last-Subject-Sequence', '1');
    const refused = await publishStored(handles.replies, subject, 'c', 5_000, expect).catch((error: unknown) => error);
    assert.ok(isWrongLastSequence(refused), `refused: ${String(refused)}`);
  });

  it('getStored reads the last message of a subject with its headers, and null for none', async () => {
    const subject = `unit_requests.${randomUUID()}`;
    assert.equal(await getStored(handles.replies, STREAM, { last_by_subj: subject }, 5_000), null);
    const h = headers();
    h.set('KV-Operation', 'DEL');
    const { seq } = await publishStored(handles.replies, subject, 'value ✓', 5_000, h);
    const stored = await getStored(handles.replies, STREAM, { last_by_subj: subject }, 5_000);
    assert.equal(stored?.seq, seq);
    assert.equal(stored?.subject, subject);
    assert.equal(new TextDecoder().decode(stored?.data), 'value ✓');
    assert.match(stored?.headerText ?? '', /KV-Operation: DEL/);
    await assert.rejects(getStored(handles.replies, 'UNIT_REQUESTS_NO_SUCH_STREAM', { last_by_subj: subject }, 5_000), /stream not found/i);
  });
});
