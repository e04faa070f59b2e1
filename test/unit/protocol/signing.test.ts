// Signed messages (src/protocol/signing.ts): what the signature covers, key rotation, and refusals with reasons.
// End to end, with real workers on every engine: test/integration/signing.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../../src/errors.ts';
import { decodeEnvelope, encodeEnvelope } from '../../../src/protocol/envelope.ts';
import { buildRetryMessage, buildTaskMessage, parseTaskMessage, type WireMessage } from '../../../src/protocol/message.ts';
import { SIGNATURE_HEADER, Signer, signerFor, splitKeys } from '../../../src/protocol/signing.ts';

const KEY = 'k'.repeat(16) + '-current';
const OLD = 'o'.repeat(16) + '-retired';
const OTHER = 'x'.repeat(16) + '-someone-else';

function message(): WireMessage {
  return buildTaskMessage({
    id: 'b1f1c0de-0000-4000-8000-000000000001',
    name: 'math.add',
    args: [2, 3],
    kwargs: { scale: 1 },
    queue: 'celery',
    eta: new Date('2026-12-06T12:00:00Z'),
    expires: new Date('2026-12-06T13:00:00Z'),
    timeLimitSec: 30,
    softTimeLimitSec: 20,
  });
}

function signed(signer = new Signer([KEY])): WireMessage {
  const m = message();
  signer.sign(m);
  return m;
}

function refusal(signer: Signer, m: WireMessage): string {
  const verdict = signer.verify(m);
  assert.equal(verdict.ok, false, 'refused');
  return (verdict as { reason: string }).reason;
}

describe('signed messages', () => {
  it('a signed message verifies, through its envelope on the wire (JSON and base64 bodies)', () => {
    const signer = new Signer([KEY]);
    const m = signed(signer);
    assert.match(m.headers[SIGNATURE_HEADER] as string, /^v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(signer.verify(m).ok, true);
    for (const encoding of ['utf-8', 'base64'] as const) assert.equal(signer.verify(decodeEnvelope(encodeEnvelope(m, encoding))).ok, true, encoding);
    assert.equal(parseTaskMessage(m).name, 'math.add', 'the header does not disturb parsing');
  });

  it('an unsigned message, a signature of another key, and a malformed header are refused with what is wrong', () => {
    const signer = new Signer([KEY]);
    assert.match(refusal(signer, message()), /not signed/);
    assert.match(refusal(signer, signed(new Signer([OTHER]))), /key this worker does not hold \(key id [0-9a-f]{8}\)/);
    const m = signed(signer);
    m.headers[SIGNATURE_HEADER] = 'v0.abc.def';
    assert.match(refusal(signer, m), /not a v1 signature/);
    m.headers[SIGNATURE_HEADER] = 42;
    assert.match(refusal(signer, m), /not text/);
  });

  it('a change to the body, the content type or any steering header after signing is refused', () => {
    const signer = new Signer([KEY]);
    const changes: Array<[string, (m: WireMessage) => void]> = [
      ['body', (m) => (m.body = m.body.replace('[2,3]', '[2,4]'))],
      ['content type', (m) => (m.contentType = 'application/x-python-serialize')],
      ['task', (m) => (m.headers['task'] = 'os.system')],
      ['id', (m) => (m.headers['id'] = 'b1f1c0de-0000-4000-8000-000000000002')],
      ['eta', (m) => (m.headers['eta'] = '2026-12-06T12:00:01.000000+00:00')],
      ['eta removed', (m) => (m.headers['eta'] = null)],
      ['expires', (m) => (m.headers['expires'] = '2099-01-01T00:00:00.000000+00:00')],
      ['time limits', (m) => (m.headers['timelimit'] = [null, null])],
      ['retries', (m) => (m.headers['retries'] = 5)],
      ['ignore_result', (m) => (m.headers['ignore_result'] = true)],
    ];
    for (const [what, change] of changes) {
      const m = signed(signer);
      change(m);
      assert.match(refusal(signer, m), /does not match its body and headers/, what);
    }
  });

  it('headers a transport adds in transit are not covered: a redelivered or dead-lettered copy still verifies', () => {
    const signer = new Signer([KEY]);
    const m = signed(signer);
    Object.assign(m.headers, { redelivered: true, 'x-death': [{ count: 1 }], 'x-delivery-count': 2, fennel_dead_letter: { reason: 'x' } });
    m.properties.delivery_info = { exchange: '', routing_key: 'other' };
    assert.equal(signer.verify(m).ok, true);
  });

  it('keys rotate: the first key signs, every key verifies, and a retired key left out is refused', () => {
    const before = signed(new Signer([OLD]));
    const rotating = new Signer([KEY, OLD]);
    assert.equal(rotating.verify(before).ok, true, 'a message signed before the rotation');
    const after = signed(rotating);
    assert.equal(new Signer([KEY]).verify(after).ok, true, 'signed with the first key');
    assert.match(refusal(new Signer([KEY]), before), /does not hold/);
  });

  it('a retry built from a signed message is refused until the worker signs it again', () => {
    const signer = new Signer([KEY]);
    const next = buildRetryMessage(parseTaskMessage(signed(signer)), null, 'celery');
    assert.match(refusal(signer, next), /not signed/);
    signer.sign(next);
    assert.equal(signer.verify(next).ok, true);
  });

  it('keys: at least 16 characters each; the environment separates several with commas; none means no signer', () => {
    assert.throws(() => new Signer(['short']), (e: unknown) => e instanceof ConfigError && /at least 16/.test(e.message));
    assert.throws(() => new Signer([]), ConfigError);
    assert.deepEqual(splitKeys(` ${KEY} , ${OLD},`), [KEY, OLD]);
    assert.equal(signerFor(undefined), undefined);
    assert.equal(signerFor(`${KEY},${OLD}`)!.verify(signed(new Signer([OLD]))).ok, true);
  });

  it('any change to any byte of the body is refused (property)', () => {
    const signer = new Signer([KEY]);
    const m = signed(signer);
    fc.assert(
      fc.property(fc.nat(m.body.length - 1), fc.integer({ min: 32, max: 126 }), (at, code) => {
        fc.pre(m.body.charCodeAt(at) !== code);
        const changed = { ...m, headers: { ...m.headers }, body: m.body.slice(0, at) + String.fromCharCode(code) + m.body.slice(at + 1) };
        return signer.verify(changed).ok === false;
      }),
    );
  });
});
