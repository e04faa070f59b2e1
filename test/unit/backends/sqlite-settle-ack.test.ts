// sqlite:// with the broker and the results in one file: a delivery's ack rides in the transaction that stores its
// outcome (Backend.settleAndAck, Delivery.joinableAck), on real files. One commit instead of two, and never a moment
// where the outcome is stored while its message is still held; a call the outcome releases keeps the ack for after
// its send; a store on another file, or a failing step, leaves the ack to the caller.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteBackend } from '../../../src/backends/sqlite.ts';
import { signedBackend } from '../../../src/backends/signed.ts';
import { sqlitePath } from '../../../src/clients/sqlite-file.ts';
import { buildTaskMessage } from '../../../src/protocol/message.ts';
import { nowIso, type TaskMeta } from '../../../src/protocol/result.ts';
import { SIGNATURE_HEADER, Signer } from '../../../src/protocol/signing.ts';
import { States } from '../../../src/protocol/states.ts';
import { SqliteTransport } from '../../../src/transports/sqlite.ts';
import type { Delivery } from '../../../src/transports/transport.ts';
import { waitFor } from '../../conformance/helpers/wait.ts';
import { makeTempDir, type TempDir } from '../../support/tmp.ts';

const success = (taskId: string, result: unknown): TaskMeta => ({ status: States.SUCCESS, result, traceback: null, children: [], date_done: nowIso(), task_id: taskId });

describe('sqlite://: the ack in the store’s transaction', () => {
  let dir: TempDir;
  let url: string;
  const closers: Array<() => Promise<void>> = [];

  beforeEach(() => {
    dir = makeTempDir('fennel-settle-ack-');
    url = `sqlite://${dir.file('fennel.db')}`;
  });

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    dir.remove();
  });

  const open = (backendUrl = url): { transport: SqliteTransport; backend: SqliteBackend } => {
    const transport = new SqliteTransport(url, { visibilityTimeoutSec: 60, pollIntervalMs: 50 });
    const backend = new SqliteBackend(backendUrl);
    closers.push(() => transport.close(), () => backend.close());
    return { transport, backend };
  };

  /** Publishes `n` tasks to a fresh queue and consumes them with a window of one. */
  const consumeOne = async (transport: SqliteTransport, n = 1): Promise<{ ids: string[]; got: Delivery[] }> => {
    const queue = `q-${randomUUID()}`;
    const ids = Array.from({ length: n }, () => randomUUID());
    for (const id of ids) await transport.publish(buildTaskMessage({ id, name: 't.echo', args: [1], queue }), { queue });
    const got: Delivery[] = [];
    const sub = await transport.consume({ queues: [queue], prefetch: 1 }, (d) => got.push(d));
    closers.push(() => sub.cancel());
    await waitFor(() => got.length === 1, { what: 'the first delivery' });
    return { ids, got };
  };

  /** The rows still in the broker, read by another connection (what another process sees). */
  const messagesLeft = (): number => {
    const db = new Database(sqlitePath(url), { readonly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM fennel_messages').get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  it('takes the ack with the store, and the delivery leaves the window (the next one is handed out)', async () => {
    const { transport, backend } = open();
    const { ids, got } = await consumeOne(transport, 2);
    const ack = got[0]!.joinableAck;
    assert.ok(ack, 'a sqlite:// delivery offers its ack to the store');
    const { released, acked } = await backend.settleAndAck(success(ids[0]!, 'one'), ack);
    assert.deepEqual(released, []);
    assert.equal(acked, true);
    assert.equal((await backend.get(ids[0]!))?.result, 'one');
    // The window of one is free again only if the subscription counted the delivery settled.
    await waitFor(() => got.length === 2, { what: 'the second delivery, once the first is settled' });
    assert.equal(String(got[1]!.message.headers['id']), ids[1]);
    assert.equal(messagesLeft(), 1, 'the first message is gone, the second is held');
    // The delivery is settled: acking it again changes nothing and does not throw.
    await got[0]!.ack();
    await got[1]!.ack();
    assert.equal(messagesLeft(), 0);
  });

  it('leaves the ack to the caller when the outcome releases a parked call (the call is sent before the ack)', async () => {
    const { transport, backend } = open();
    const { ids, got } = await consumeOne(transport);
    const parked = randomUUID();
    assert.deepEqual(await backend.park(parked, [ids[0]!], '{"call":1}'), { ready: false });
    const { released, acked } = await backend.settleAndAck(success(ids[0]!, 2), got[0]!.joinableAck!);
    assert.equal(acked, false);
    assert.deepEqual(
      released.map((r) => r.taskId),
      [parked],
    );
    assert.equal((await backend.get(ids[0]!))?.status, States.SUCCESS, 'the outcome is stored');
    assert.equal(messagesLeft(), 1, 'the message is still held, for the caller to ack after the send');
    await got[0]!.ack();
    assert.equal(messagesLeft(), 0);
  });

  it('leaves the ack to the caller when the results are in another file', async () => {
    const { transport, backend } = open(`sqlite://${dir.file('results.db')}`);
    const { ids, got } = await consumeOne(transport);
    const { acked } = await backend.settleAndAck(success(ids[0]!, 3), got[0]!.joinableAck!);
    assert.equal(acked, false);
    assert.equal((await backend.get(ids[0]!))?.result, 3);
    assert.equal(messagesLeft(), 1);
    await got[0]!.ack();
  });

  it('stores nothing when the ack’s step fails: one savepoint for both, and the delivery stays held', async () => {
    const { transport, backend } = open();
    const { ids, got } = await consumeOne(transport);
    const real = got[0]!.joinableAck!;
    let committed = false;
    const failing = {
      file: real.file,
      run: () => {
        throw new Error('the ack failed');
      },
      committed: () => (committed = true),
    };
    await assert.rejects(backend.settleAndAck(success(ids[0]!, 4), failing), /the ack failed/);
    assert.equal(await backend.get(ids[0]!), undefined, 'the store was rolled back with the ack');
    assert.equal(committed, false);
    assert.equal(messagesLeft(), 1);
    // The caller's error path can still settle it.
    await got[0]!.ack();
    assert.equal(messagesLeft(), 0);
  });

  it('signs what it stores when the app signs results (the signed wrapper does not pass it through unsigned)', async () => {
    const { transport, backend } = open();
    const signer = new Signer(['a key of at least thirty-two characters, for the test']);
    const signed = signedBackend(backend, signer);
    const { ids, got } = await consumeOne(transport);
    const { acked } = await signed.settleAndAck!(success(ids[0]!, 5), got[0]!.joinableAck!);
    assert.equal(acked, true);
    const raw = (await backend.get(ids[0]!)) as TaskMeta & Record<string, unknown>;
    assert.equal(typeof raw[SIGNATURE_HEADER], 'string', 'stored with its signature');
    assert.equal((await signed.get(ids[0]!))?.result, 5, 'and it verifies');
    assert.equal(messagesLeft(), 0);
  });
});
