// Signed messages: an HMAC-SHA256 over a task message's body and the headers that steer its execution, so that a
// worker with a key runs only what a holder of the key sent. Fennel to Fennel: Celery's `auth` serializer signs
// with X.509 certificates and a different layout, and a Celery worker ignores this header (a mixed cluster runs
// without keys). docs/security.md.
//
// The signature travels in one header, `fennel_signature`: `v1.<key id>.<MAC, base64url>`. The key id (8 hex
// digits of a hash of the key, never the key) picks the key among several, so keys rotate: sign with the first,
// accept any. What is signed is a JSON array of a version tag, the steering headers as they are on the wire (absent
// ones as null), the content type and encoding, and the body text. Headers a transport adds or rewrites in transit
// (redelivered, x-death, delivery counts, Fennel's dead-letter and crash bookkeeping) are not covered; a message a
// worker republishes with new steering headers (a retry) is signed again by that worker.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../errors.ts';
import type { WireMessage } from './message.ts';

export const SIGNATURE_HEADER = 'fennel_signature';

/** The headers that decide what runs, when, for how long and where its result goes. */
const SIGNED_HEADERS = ['task', 'id', 'eta', 'expires', 'timelimit', 'retries', 'root_id', 'parent_id', 'group', 'group_index', 'ignore_result'] as const;

/** A key shorter than this is refused: an HMAC is as strong as its key. */
export const MIN_KEY_LENGTH = 16;

interface Key {
  id: string;
  secret: Buffer;
}

export type Verdict = { ok: true; keyId: string } | { ok: false; reason: string };

export class Signer {
  private readonly keys: Key[];

  /** `keys`: the first signs, every one verifies. */
  constructor(keys: readonly string[]) {
    if (keys.length === 0) throw new ConfigError('signingKey: at least one key is needed');
    this.keys = keys.map((key, i) => {
      if (key.length < MIN_KEY_LENGTH) throw new ConfigError(`signingKey: key ${i + 1} is ${key.length} characters long; a signing key needs at least ${MIN_KEY_LENGTH} (random, such as \`openssl rand -base64 32\`)`);
      return { id: keyId(key), secret: Buffer.from(key, 'utf8') };
    });
  }

  /** The keys' ids, the signing key's first: what logs and the worker's banner show (never the keys). */
  get keyIds(): string[] {
    return this.keys.map((key) => key.id);
  }

  /** Sets the message's signature header, made with the first key. */
  sign(message: WireMessage): void {
    message.headers[SIGNATURE_HEADER] = this.signText(messageText(message));
  }

  /** Whether the message carries a signature made by one of the keys over what it carries now. */
  verify(message: WireMessage): Verdict {
    return this.verifyText(messageText(message), message.headers[SIGNATURE_HEADER], 'its body and headers', 'the message');
  }

  /** A signature of `text` with the first key: `v1.<key id>.<MAC>` (results and records use it too). */
  signText(text: string): string {
    const key = this.keys[0]!;
    return `v1.${key.id}.${mac(key.secret, text).toString('base64url')}`;
  }

  /**
   * Whether `signature` (as signText makes it) was made by one of the keys over `text`; in the reason, `what` names
   * `text` and `subject` the thing signed.
   */
  verifyText(text: string, signature: unknown, what = 'what it signs', subject = 'it'): Verdict {
    if (signature === undefined || signature === null) return { ok: false, reason: `${subject} is not signed` };
    if (typeof signature !== 'string') return { ok: false, reason: `its ${SIGNATURE_HEADER} is not text` };
    const parts = signature.split('.');
    if (parts.length !== 3 || parts[0] !== 'v1') return { ok: false, reason: `its ${SIGNATURE_HEADER} is not a v1 signature` };
    const [, id, encoded] = parts as [string, string, string];
    const key = this.keys.find((k) => k.id === id);
    if (!key) return { ok: false, reason: `it is signed with a key this worker does not hold (key id ${id})` };
    const given = Buffer.from(encoded, 'base64url');
    const expected = mac(key.secret, text);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: `its signature does not match ${what} (key id ${id}): it was changed after it was signed, or forged` };
    return { ok: true, keyId: id };
  }
}

/** A Signer for the configured keys, or undefined when none is set. */
export function signerFor(keys: string | readonly string[] | undefined): Signer | undefined {
  if (keys === undefined) return undefined;
  return new Signer(typeof keys === 'string' ? splitKeys(keys) : keys);
}

/** FENNEL_SIGNING_KEY holds several keys separated by commas (base64 and hex keys have none). */
export function splitKeys(text: string): string[] {
  return text
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
}

function keyId(key: string): string {
  return createHash('sha256').update(`fennel-signing-key:${key}`).digest('hex').slice(0, 8);
}

/** What a message's signature covers. */
function messageText(message: WireMessage): string {
  const steering = SIGNED_HEADERS.map((name) => message.headers[name] ?? null);
  return JSON.stringify(['fennel-signature-v1', steering, message.contentType, message.contentEncoding, message.body]);
}

function mac(secret: Buffer, text: string): Buffer {
  return createHmac('sha256', secret).update(text).digest();
}
