// Worker.name and the ready line (src/worker/worker.ts): the -n option and its default, and a "worker ready"
// line that is written at any log level and never carries a password.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { ConfigError, Fennel, Worker } from '../../../src/index.ts';

function capture(level: string): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

describe('Worker name and ready line', () => {
  it('is fennel.<pid>@<hostname> by default, and the expansion of `hostname` when given', () => {
    const app = new Fennel({ broker: `memory://${randomUUID()}` });
    assert.equal(new Worker(app, { pool: 'async' }).name, `fennel.${process.pid}@${hostname()}`);
    assert.equal(new Worker(app, { pool: 'async', hostname: 'math.%p@%h' }).name, `math.${process.pid}@${hostname()}`);
    assert.throws(() => new Worker(app, { pool: 'async', hostname: 'w%i@%h' }), ConfigError);
  });

  it('writes "worker ready" with its name at log level warn, with the broker and backend passwords masked', async () => {
    // memory:// takes any suffix as the name of an instance, user info included: a URL with a password to hide.
    const url = `memory://user:s3cret@${randomUUID()}`;
    const app = new Fennel({ broker: url });
    const { logger, lines } = capture('warn');
    const worker = new Worker(app, { pool: 'async', concurrency: 1, logger, hostname: 'ready-test@%h' });
    await worker.start();
    await worker.stop(1);
    const ready = lines.find((l) => String(l['msg']).startsWith('worker ready'));
    assert.ok(ready, `a ready line at level warn; got ${JSON.stringify(lines)}`);
    assert.match(String(ready['msg']), new RegExp(`^worker ready: ready-test@${hostname()}, async pool × 1, queues celery$`));
    assert.equal(ready['broker'], url.replace('s3cret', '***'));
    assert.equal(ready['backend'], url.replace('s3cret', '***'));
    assert.doesNotMatch(JSON.stringify(lines), /s3cret/);
  });
});
