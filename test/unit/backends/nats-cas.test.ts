// The NATS result backend's compare-and-set (src/backends/nats/cas.ts) against the shared NATS server, a bucket of its
// own: what it remembers of its own writes (a key changed again writes without reading; a settled value, an outcome,
// is forgotten and read the next time), and that a remembered revision another process made stale costs one refused
// write and a read, never a lost change.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { NatsLink, type NatsHandles } from '../../../src/clients/nats/connection.ts';
import { openBucket, type KV } from '../../../src/clients/nats/kv.ts';
import { CasKeys } from '../../../src/backends/nats/cas.ts';
import { natsSkipReason, natsUrlForTest } from '../../support/nats.ts';

const URL = natsUrlForTest('unit_cas');
const skip = await natsSkipReason();
const BUCKET = `unit_cas_${randomUUID().slice(0, 8)}`;

describe('NATS compare-and-set (CasKeys)', { skip }, () => {
  let link: NatsLink;
  let handles: NatsHandles;
  let kv: KV;
  let reads = 0;
  let cas: CasKeys;

  before(async () => {
    link = new NatsLink(URL, { connectTimeoutMs: 5_000, name: 'fennel unit cas' });
    handles = await link.handles();
    kv = await openBucket(handles, BUCKET, { ttlSec: 60, replicas: 1 });
    // Counts the reads CasKeys makes, through the bucket it is given.
    const counted = Object.create(kv) as KV;
    counted.get = (key: string) => {
      reads++;
      return kv.get(key);
    };
    cas = new CasKeys(async () => counted, `bucket ${BUCKET}`);
  });
  after(async () => {
    await handles.jsm.streams.delete(`KV_${BUCKET}`).catch(() => false);
    await link.close();
  });

  const append = (key: string, part: string, settled = false) => cas.change(key, (current) => ({ next: `${current ?? ''}${part}`, result: undefined, settled }));

  it('a key it wrote is changed again without a read; a settled value is read before the next change', async () => {
    const key = `k.${randomUUID()}`;
    reads = 0;
    await append(key, 'a'); // first tried as absent: no read
    await append(key, 'b'); // remembered: no read
    assert.equal(reads, 0, 'nothing read while the value is remembered');
    await append(key, 'c', true); // written from what is remembered, then forgotten
    assert.equal(reads, 0);
    await append(key, 'd'); // not remembered: tried as absent, refused, read, written
    assert.equal(reads, 1, 'the settled value was read before the change that followed it');
    assert.equal((await kv.get(key))?.string(), 'abcd', 'no change lost');
  });

  it('a remembered value another process changed costs one refused write and a read, and loses nothing', async () => {
    const key = `k.${randomUUID()}`;
    await append(key, 'a');
    await kv.put(key, 'a+other'); // another writer: the remembered revision is stale
    reads = 0;
    await append(key, 'b');
    assert.equal(reads, 1);
    assert.equal((await kv.get(key))?.string(), 'a+otherb');
  });
});
