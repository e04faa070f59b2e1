// URL scheme → transport engine (src/transports/index.ts).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { createTransport, schemeOf } from '../../../src/transports/index.ts';
import { MemoryTransport } from '../../../src/transports/memory.ts';
import { SqliteTransport } from '../../../src/transports/sqlite.ts';
import { makeTempDir } from '../../support/tmp.ts';

const options = { visibilityTimeoutSec: 30, pollIntervalMs: 250 };

describe('createTransport', () => {
  it('opens a SqliteTransport for sqlite:// URLs', async () => {
    const dir = makeTempDir('fennel-index-');
    try {
      const t = createTransport(`sqlite://${dir.file('q.db')}`, options);
      assert.ok(t instanceof SqliteTransport);
      assert.equal(t.url, `sqlite://${dir.file('q.db')}`);
      await t.close();
    } finally {
      dir.remove();
    }
  });

  it('shares one memory:// engine per URL within a process, so a producer and an in-process worker meet', async () => {
    const url = `memory://${randomUUID()}`;
    const a = createTransport(url, options);
    assert.ok(a instanceof MemoryTransport);
    assert.equal(createTransport(url, options), a);
    assert.notEqual(createTransport(`memory://${randomUUID()}`, options), a);
  });

  it('refuses an unknown scheme with a ConfigError listing the known ones', () => {
    assert.throws(
      () => createTransport('carrier-pigeon://coop', options),
      (e: unknown) => e instanceof ConfigError && e.code === 'FENNEL_CONFIG' && /redis:\/\//.test(e.message) && e.message.includes('sqlite://') && e.message.includes('memory://'),
    );
  });

  it('reads the scheme case-insensitively', () => {
    assert.equal(schemeOf('SQLite:///tmp/x.db'), 'sqlite');
  });
});
