// SqliteFile's change notifications: what wakes a waiter when another process commits. The watcher sees the write
// of a commit's frames to the -wal file, which can come before the commit is visible (the WAL index is updated after
// it, in shared memory that inotify does not see), so listeners are woken at once and looked at again shortly after.

import { utimesSync } from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteFile } from '../../../src/clients/sqlite-file.ts';
import { waitFor } from '../../conformance/helpers/wait.ts';
import { makeTempDir, type TempDir } from '../../support/tmp.ts';

describe('SqliteFile change notifications', () => {
  let dir: TempDir;
  let file: SqliteFile;

  beforeEach(() => {
    dir = makeTempDir('fennel-sqlite-file-');
    const path = dir.file('fennel.db');
    file = SqliteFile.acquire(path, `sqlite://${path}`);
  });

  afterEach(() => {
    file.release();
    dir.remove();
  });

  it('wakes a listener again after a change seen by the watcher, not only at once (a commit may not be visible yet)', async () => {
    let calls = 0;
    // A fallback poll of a minute: every call below comes from the watcher and its second looks.
    const stop = file.onChange(() => calls++, 60_000);
    try {
      // Another process's write to the -wal file, as the watcher sees it, with no commit behind it yet.
      const other = new Database(dir.file('fennel.db'));
      other.prepare('CREATE TABLE IF NOT EXISTS t (x)').run();
      other.close();
      await waitFor(() => calls >= 1, { what: 'the wake-up for the write' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const settled = calls;
      utimesSync(dir.file('fennel.db-wal'), new Date(), new Date());
      await waitFor(() => calls >= settled + 1, { what: 'the wake-up at once' });
      // Without the later looks, nothing else would call it for a minute.
      await waitFor(() => calls >= settled + 3, { what: 'the second and third looks after the change' });
    } finally {
      stop();
    }
  });
});
