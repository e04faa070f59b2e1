// Header tables as py-amqp reads them (src/clients/amqp/table.ts): amqplib's own encoder, byte for byte. An integer
// from 128 to 32767 (or below -128) must not be written with the tag 's' (py-amqp reads a short string there), but
// as 'I' or 'l'; small integers, floats, strings and nested values keep amqplib's choices, and a table that needs
// nothing is returned as it is. The Celery interop tests (control-interop on RabbitMQ) prove it against py-amqp.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { amqpTable } from '../../../src/clients/amqp/table.ts';

// amqplib's codec is not among its exports: loaded by its file path.
const codec = createRequire(import.meta.url)(createRequire(import.meta.url).resolve('amqplib').replace(/channel_api\.js$/, 'lib/codec.js')) as {
  encodeTable(buffer: Buffer, table: Record<string, unknown>, offset: number): number;
  decodeFields(slice: Buffer): Record<string, unknown>;
};

/** The field-type tag amqplib writes for each top-level key of `table` (keys are short strings, then the tag). */
function tags(table: Record<string, unknown>): Record<string, string> {
  const buffer = Buffer.alloc(4096);
  const length = codec.encodeTable(buffer, table, 0);
  const out: Record<string, string> = {};
  let offset = 4; // the table's length
  while (offset < length) {
    const keyLength = buffer.readUInt8(offset);
    const key = buffer.toString('utf8', offset + 1, offset + 1 + keyLength);
    offset += 1 + keyLength;
    out[key] = String.fromCharCode(buffer[offset]!);
    // Skip the value: re-encode this key alone to learn its size.
    const one = Buffer.alloc(4096);
    const size = codec.encodeTable(one, { [key]: table[key] }, 0) - 4 - 1 - keyLength;
    offset += size;
  }
  return out;
}

function roundTrip(table: Record<string, unknown>): Record<string, unknown> {
  const buffer = Buffer.alloc(4096);
  const length = codec.encodeTable(buffer, table, 0);
  return codec.decodeFields(buffer.subarray(4, length));
}

describe('AMQP header tables, as py-amqp reads them', () => {
  it("writes integers amqplib would guess are shorts ('s') as 'I', and huge ones as 'l'", () => {
    const headers = { clock: 128, retries: 32767, negative: -200, big: 70_000, huge: 2 ** 40, small: 5, float: 1796541608.4886956, name: 'x' };
    assert.equal(tags(headers)['clock'], 's', "amqplib alone: the tag py-amqp misreads (this test's premise)");
    assert.deepEqual(tags(amqpTable(headers)), { clock: 'I', retries: 'I', negative: 'I', big: 'I', huge: 'l', small: 'b', float: 'd', name: 'S' });
    assert.deepEqual(roundTrip(amqpTable(headers)), headers, 'and the values read back unchanged');
  });

  it('types integers inside arrays and nested tables (timelimit, a dead letter record), and leaves a table that needs nothing as it is', () => {
    const headers = { timelimit: [300, null], meta: { at: 1796541608, n: 1000 }, plain: [1, 2] };
    const table = amqpTable(headers);
    assert.deepEqual(table['timelimit'], [{ '!': 'int', value: 300 }, null]);
    assert.deepEqual(table['meta'], { at: { '!': 'int', value: 1796541608 }, n: { '!': 'int', value: 1000 } });
    assert.deepEqual(roundTrip(table), headers);
    const untouched = { id: 'a', retries: 0, timelimit: [null, null], eta: null };
    assert.equal(amqpTable(untouched), untouched, 'the same object: nothing copied');
  });
});
