// Runs the transport and backend conformance suites against the sqlite:// engines. Every factory call
// opens a fresh database file in its own temp directory (removed when this file's tests end).
//
// A second instance on the same file must use its own connection to test anything: within one process,
// SqliteFile shares a single handle per resolved path. So `reopen`/`peer` open the file through a symlink,
// which SQLite resolves to the same database (one WAL, one lock) while SqliteFile sees another path.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { symlinkSync } from 'node:fs';
import { after } from 'node:test';
import type { ResultBackend } from '../../src/backends/backend.ts';
import { SqliteBackend } from '../../src/backends/sqlite.ts';
import { SqliteTransport } from '../../src/transports/sqlite.ts';
import { sqlitePath } from '../../src/transports/sqlite-file.ts';
import type { Transport } from '../../src/transports/transport.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';
import { backendSuite } from './backend.suite.ts';
import { transportSuite, type TransportOpenOptions } from './transport.suite.ts';

const POLL_MS = 100;
const dirs: TempDir[] = [];
after(() => {
  for (const dir of dirs) dir.remove();
});

function freshUrl(): string {
  const dir = makeTempDir('fennel-sqlite-conformance-');
  dirs.push(dir);
  return `sqlite://${dir.file('fennel.db')}`;
}

/** A URL naming the same database file by another path (a symlink beside it), so it gets its own connection. */
function otherPathTo(url: string): string {
  const path = sqlitePath(url);
  const link = `${path}.second-${randomUUID()}.db`;
  symlinkSync(path, link);
  return `sqlite://${link}`;
}

function openTransport(url: string, opts: TransportOpenOptions): SqliteTransport {
  return new SqliteTransport(url, { visibilityTimeoutSec: opts.visibilityTimeoutSec, pollIntervalMs: POLL_MS });
}

transportSuite('sqlite', (opts) => openTransport(freshUrl(), opts), { delayedDelivery: true, priorities: true, crossProcess: true, deduplication: true }, {
  reopen: (transport: Transport, opts) => {
    const second = openTransport(otherPathTo(transport.url), opts);
    assert.notEqual(second.sql.insert.database, (transport as SqliteTransport).sql.insert.database, 'the second transport has its own connection');
    return second;
  },
});

backendSuite('sqlite', () => new SqliteBackend(freshUrl(), { pollIntervalMs: POLL_MS }), {
  peer: (backend: ResultBackend) => new SqliteBackend(otherPathTo(backend.url), { pollIntervalMs: POLL_MS }),
});
