// What the sqlite:// transport does beyond the conformance suite: its URL, the envelope it stores, how it
// treats an undecodable row, what close() does with held messages, and the errors it raises.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { BrokerUnavailableError, ClosedError, ConfigError } from '../../../src/errors.ts';
import { buildTaskMessage } from '../../../src/protocol/message.ts';
import { sqlitePath } from '../../../src/clients/sqlite-file.ts';
import { SqliteTransport } from '../../../src/transports/sqlite.ts';
import type { Delivery } from '../../../src/transports/transport.ts';
import { waitFor } from '../../conformance/helpers/wait.ts';
import { makeTempDir, type TempDir } from '../../support/tmp.ts';

function task(queue: string) {
  const id = randomUUID();
  return { id, message: buildTaskMessage({ id, name: 'tests.echo', args: ['é ✓'], queue }) };
}

describe('sqlitePath', () => {
  it('reads the file path from the URL', () => {
    assert.equal(sqlitePath('sqlite://fennel.db'), 'fennel.db');
    assert.equal(sqlitePath('sqlite://data/q.db'), 'data/q.db');
    assert.equal(sqlitePath('sqlite:///var/lib/fennel/q.db'), '/var/lib/fennel/q.db');
    assert.equal(sqlitePath('sqlite://:memory:'), ':memory:');
  });

  it('defaults to fennel.db for a bare sqlite://', () => {
    assert.equal(sqlitePath('sqlite://'), 'fennel.db');
  });

  it('refuses a query parameter rather than ignore it (?mode=ro would not make the file read-only)', () => {
    assert.throws(() => sqlitePath('sqlite:///var/lib/fennel/q.db?mode=wal'), (e: unknown) => e instanceof ConfigError && /unknown parameter 'mode'/.test(e.message));
  });
});

describe('SqliteTransport', () => {
  let dir: TempDir;
  let url: string;
  const open: SqliteTransport[] = [];
  const openTransport = (visibilityTimeoutSec = 30): SqliteTransport => {
    const t = new SqliteTransport(url, { visibilityTimeoutSec, pollIntervalMs: 100 });
    open.push(t);
    return t;
  };

  beforeEach(() => {
    dir = makeTempDir('fennel-sqlite-unit-');
    url = `sqlite://${dir.file('fennel.db')}`;
  });

  afterEach(async () => {
    for (const t of open.splice(0)) await t.close();
    dir.remove();
  });

  it('stores each message as kombu’s envelope with a utf-8 body', async () => {
    const t = openTransport();
    const q = `q-${randomUUID()}`;
    const { message } = task(q);
    await t.publish(message, { queue: q, priority: 4 });
    const db = new Database(sqlitePath(url), { readonly: true });
    try {
      const row = db.prepare('SELECT queue, priority, envelope FROM fennel_messages').get() as { queue: string; priority: number; envelope: string };
      assert.equal(row.queue, q);
      assert.equal(row.priority, 4);
      const envelope = JSON.parse(row.envelope) as Record<string, unknown>;
      assert.deepEqual(Object.keys(envelope), ['body', 'content-encoding', 'content-type', 'headers', 'properties']);
      assert.equal(envelope['body'], message.body);
      assert.equal(envelope['content-type'], 'application/json');
      assert.deepEqual(envelope['headers'], message.headers);
      assert.deepEqual(envelope['properties'], { ...message.properties, body_encoding: 'utf-8' });
    } finally {
      db.close();
    }
  });

  it('keeps a large envelope out of its row: a claim writes a few pages, not the envelope again; every way out takes it along', async () => {
    const t = openTransport();
    const q = `q-${randomUUID()}`;
    const big = (n: number) => {
      const id = randomUUID();
      return buildTaskMessage({ id, name: 'tests.echo', args: [`${n}:${'x'.repeat(200_000)}`], queue: q });
    };
    const raw = new Database(sqlitePath(url));
    const count = (table: string): number => (raw.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    const walFrames = (mode: 'PASSIVE' | 'TRUNCATE'): { busy: number; log: number } => (raw.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number; log: number }>)[0]!;
    try {
      const first = big(1);
      await t.publish(first, { queue: q });
      const row = raw.prepare('SELECT envelope FROM fennel_messages').get() as { envelope: string };
      assert.equal(row.envelope, '', 'the row holds no envelope');
      assert.equal(count('fennel_message_bodies'), 1);

      // The claim, alone in an emptied WAL: it sets the lease on a small row. Written into the row, the 200 KB
      // envelope would be written again with it: about 50 pages of 4 KiB.
      assert.equal(walFrames('TRUNCATE').busy, 0);
      const got: Delivery[] = [];
      const sub = await t.consume({ queues: [q], prefetch: 1 }, (d) => got.push(d));
      await waitFor(() => got.length === 1, { what: 'the large message' });
      const frames = walFrames('PASSIVE').log;
      assert.ok(frames > 0 && frames < 12, `the claim wrote ${frames} pages`);
      assert.equal(got[0]!.message.body, first.body);
      assert.deepEqual(got[0]!.message.headers, first.headers);
      await got[0]!.ack();
      assert.equal(count('fennel_messages'), 0);
      assert.equal(count('fennel_message_bodies'), 0, 'the ack deleted the envelope');

      // A dead letter keeps the whole envelope; sent again, it is out of line again and arrives whole.
      const second = big(2);
      await t.publish(second, { queue: q });
      await waitFor(() => got.length === 2, { what: 'the second large message' });
      await got[1]!.reject({ requeue: false, reason: 'test' });
      assert.equal(count('fennel_message_bodies'), 0, 'the dead letter took the envelope');
      const [letter] = await t.listDeadLetters();
      assert.equal(letter!.message.body, second.body);
      assert.equal(await t.requeueDeadLetter(letter!.id), true);
      await waitFor(() => got.length === 3, { what: 'the requeued dead letter' });
      assert.equal(got[2]!.message.body, second.body);
      assert.equal(count('fennel_message_bodies'), 1);
      await got[2]!.ack();
      await sub.cancel();

      // Purged messages take theirs too; a small one stays in its row.
      await t.publish(big(3), { queue: q });
      await t.publish(task(q).message, { queue: q });
      assert.equal(count('fennel_message_bodies'), 1);
      assert.equal(await t.purge(q), 2);
      assert.equal(count('fennel_message_bodies'), 0);
    } finally {
      raw.close();
    }
  });

  it('hands out a row whose envelope is not JSON with `malformed` set, and can dead-letter it', async () => {
    const t = openTransport();
    const q = `q-${randomUUID()}`;
    const db = new Database(sqlitePath(url));
    try {
      db.prepare('INSERT INTO fennel_messages (queue, priority, visible_at, envelope) VALUES (?, 0, 0, ?)').run(q, '{"body": "trunc');
    } finally {
      db.close();
    }
    const got: Delivery[] = [];
    const sub = await t.consume({ queues: [q], prefetch: 1 }, (d) => got.push(d));
    await waitFor(() => got.length === 1, { what: 'the malformed row' });
    assert.match(got[0]!.message.malformed ?? '', /not JSON/);
    assert.equal(got[0]!.message.body, '{"body": "trunc');
    await got[0]!.reject({ requeue: false, reason: 'undecodable envelope' });
    await sub.cancel();
    const letters = await t.listDeadLetters();
    assert.equal(letters.length, 1);
    assert.equal(letters[0]!.reason, 'undecodable envelope');
    assert.equal(letters[0]!.taskId, null);
    assert.equal(letters[0]!.taskName, null);
    assert.match(letters[0]!.message.malformed ?? '', /not JSON/);
  });

  it('close hands held messages back at once instead of after the visibility timeout', async () => {
    const first = openTransport(600);
    const q = `q-${randomUUID()}`;
    const { id, message } = task(q);
    await first.publish(message, { queue: q });
    const held: Delivery[] = [];
    await first.consume({ queues: [q], prefetch: 1 }, (d) => held.push(d));
    await waitFor(() => held.length === 1, { what: 'the first delivery' });
    const second = openTransport(600);
    const again: Delivery[] = [];
    await second.consume({ queues: [q], prefetch: 1 }, (d) => again.push(d));
    await first.close();
    // With a 600 s visibility timeout, only the release on close can make it visible within this wait.
    await waitFor(() => again.length === 1, { timeoutMs: 20_000, what: 'the released message' });
    assert.equal(String(again[0]!.message.headers['id']), id);
    assert.equal(again[0]!.redelivered, true);
    await again[0]!.ack();
  });

  it('two transports on one path in one process share the file, and one closing leaves the other working', async () => {
    const a = openTransport();
    const b = openTransport();
    const q = `q-${randomUUID()}`;
    await a.publish(task(q).message, { queue: q });
    await a.close();
    await b.publish(task(q).message, { queue: q });
    assert.equal(await b.depth(q), 2);
  });

  it('refuses use after close with a ClosedError', async () => {
    const t = openTransport();
    await t.close();
    const q = `q-${randomUUID()}`;
    await assert.rejects(t.publish(task(q).message, { queue: q }), (e: unknown) => e instanceof ClosedError && e.code === 'FENNEL_CLOSED');
    await assert.rejects(t.depth(q), ClosedError);
    await assert.rejects(t.consume({ queues: [q], prefetch: 1 }, () => {}), ClosedError);
  });

  it('refuses to consume no queues', async () => {
    const t = openTransport();
    await assert.rejects(t.consume({ queues: [], prefetch: 1 }, () => {}), RangeError);
  });

  it('reports a file that is not a database as BrokerUnavailableError naming the URL', () => {
    const path = dir.file('not-a-db.db');
    writeFileSync(path, 'this is a text file, not SQLite '.repeat(100));
    assert.throws(
      () => new SqliteTransport(`sqlite://${path}`),
      (e: unknown) => e instanceof BrokerUnavailableError && e.code === 'FENNEL_BROKER_UNAVAILABLE' && e.message.startsWith(`sqlite://${path}:`) && /not a SQLite database/.test(e.message),
    );
  });
});
