// Signed results and records (src/backends/signed.ts) over the memory engine: what an app with a key stores is
// signed and reads back as it was; what it did not store (forged, changed, or stored without the key) reads as a
// FAILURE with SignatureError, or is left out of readRecords with a warning. End to end: test/integration/signing.test.ts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import type { ResultBackend } from '../../../src/backends/backend.ts';
import { MemoryBackend } from '../../../src/backends/memory.ts';
import { signedBackend } from '../../../src/backends/signed.ts';
import type { TaskMeta } from '../../../src/protocol/result.ts';
import { SIGNATURE_HEADER, Signer } from '../../../src/protocol/signing.ts';

const KEY = 'results-signing-key-0123456789';
const meta = (id: string, result: unknown, status = 'SUCCESS'): TaskMeta => ({ status, result, traceback: null, children: [], date_done: '2026-12-06T12:00:00.000000+00:00', task_id: id });

describe('signed results and records', () => {
  it('a result stored through the signed backend reads back as stored, signature removed; get and wait alike', async () => {
    const inner = new MemoryBackend(`memory://${randomUUID()}`);
    const signed = signedBackend(inner, new Signer([KEY]));
    const id = randomUUID();
    const waiting = signed.wait(id, { timeoutMs: 5_000 });
    await signed.store(meta(id, { at: new Date('2026-12-06T12:00:00Z'), list: [1, 'two'] }));
    for (const read of [await signed.get(id), await waiting]) assert.deepEqual(read, meta(id, { at: new Date('2026-12-06T12:00:00Z'), list: [1, 'two'] }));
    assert.match((await inner.get(id) as unknown as Record<string, string>)[SIGNATURE_HEADER]!, /^v1\./, 'stored with its signature');
  });

  it('a result stored without the key, with another key, or changed after signing reads as FAILURE SignatureError', async () => {
    const inner = new MemoryBackend(`memory://${randomUUID()}`);
    const signed = signedBackend(inner, new Signer([KEY]));
    const unsigned = randomUUID();
    await inner.store(meta(unsigned, 42));
    const foreign = randomUUID();
    await signedBackend(inner, new Signer(['another-key-0123456789abcdef'])).store(meta(foreign, 42));
    const changed = randomUUID();
    await signed.store(meta(changed, 42, 'STARTED'));
    const stored = (await inner.get(changed))!;
    await inner.store({ ...stored, status: 'SUCCESS', result: 43 });
    for (const [id, reason] of [[unsigned, /not signed/], [foreign, /key this worker does not hold/], [changed, /does not match/]] as const) {
      const read = (await signed.get(id))!;
      assert.equal(read.status, 'FAILURE', id);
      assert.deepEqual((read.result as { exc_type: string }).exc_type, 'SignatureError');
      assert.match((read.result as { exc_message: string[] }).exc_message[0]!, new RegExp(`the stored result of task ${id} was refused: .*${reason.source}`));
    }
  });

  it('records are signed over their table and key: a forged, unsigned or moved record is left out with a warning', async () => {
    const inner = new MemoryBackend(`memory://${randomUUID()}`);
    const signed = signedBackend(inner, new Signer([KEY]));
    await signed.putRecord!('t', 'good', '{"v":1}');
    await inner.putRecord('t', 'plain', '{"v":2}');
    const good = (await inner.readRecords('t')).get('good')!;
    await inner.putRecord('t', 'moved', good);
    await inner.putRecord('t', 'broken', 'not json');
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      assert.deepEqual(await signed.readRecords!('t'), new Map([['good', '{"v":1}']]));
      await once(process, 'warning');
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings.map((w) => w.replace(/ in memory:\/\/\S+/, '')).sort(), [
      'record "broken" of t was left out: it is not signed',
      'record "moved" of t was left out: its signature does not match what it signs (key id ' + new Signer([KEY]).keyIds[0] + '): it was changed after it was signed, or forged',
      'record "plain" of t was left out: it is not signed',
    ]);
  });

  it('offers exactly the methods of the engine it wraps', () => {
    const inner: ResultBackend = new MemoryBackend(`memory://${randomUUID()}`);
    const signed = signedBackend(inner, new Signer([KEY]));
    for (const method of ['store', 'get', 'wait', 'settle', 'park', 'putRecord', 'readRecords', 'deleteRecord', 'storeFor', 'chordJoin', 'acquireLease', 'close'] as const) {
      assert.equal(typeof signed[method], typeof inner[method], method);
    }
    assert.equal(signed.url, inner.url);
  });
});
