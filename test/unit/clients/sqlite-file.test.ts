// SqliteFile's change notifications: what wakes a waiter when another process commits. The watcher sees the write
// of a commit's frames to the -wal file, which can come before the commit is visible (the WAL index is updated after
// it, in shared memory that inotify does not see): listeners are woken when another connection's commit shows, and
// the file is looked at again shortly after a change that showed none.

import assert from 'node:assert/strict';
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

  /** The watcher's callback, called by the test: the real watcher is stopped, so every event below is one the test made. */
  const watcherEvent = (): void => (file as unknown as { changedElsewhere(): void }).changedElsewhere();
  const stopWatcher = (): void => (file as unknown as { stopWatcherOnly(): void }).stopWatcherOnly();

  it('wakes listeners for another connection’s commit, and looks again when a change shows no commit yet', async () => {
    let calls = 0;
    // A fallback poll of a minute: every call below comes from the events the test makes and their later looks.
    const stop = file.onChange(() => calls++, 60_000);
    stopWatcher();
    const other = new Database(dir.file('fennel.db'));
    try {
      other.prepare('CREATE TABLE t (x)').run();
      watcherEvent();
      await waitFor(() => calls === 1, { what: 'the wake-up for a commit that is visible' });
      // A write whose commit is not visible yet (its frames are written, the WAL index not yet updated): nothing moved.
      watcherEvent();
      // The commit becomes visible with no further event: only the later look finds it.
      other.prepare('INSERT INTO t VALUES (1)').run();
      await waitFor(() => calls === 2, { what: 'the later look, finding the commit' });
      // This process's own writes (a claim, say) move nothing another connection made: no wake-up from their events.
      await file.write(() => file.db.prepare('INSERT INTO t VALUES (2)').run(), { quiet: true });
      watcherEvent();
      await new Promise((resolve) => setTimeout(resolve, 100)); // past every later look
      assert.equal(calls, 2, 'no wake-up for this process’s own quiet write');
    } finally {
      other.close();
      stop();
    }
  });

  it('commits writes that bring a megabyte at once, not at the end of the turn, and never from inside a transaction', async () => {
    file.db.prepare('CREATE TABLE t (x)').run();
    const other = new Database(dir.file('fennel.db'), { readonly: true });
    const count = (): number => (other.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
    const insert = (): unknown => file.db.prepare('INSERT INTO t VALUES (1)').run();
    try {
      // Small writes wait for the turn's end, so that they share one commit.
      const small = file.write(insert, { bytes: 1000 });
      assert.equal(count(), 0);
      await small;
      assert.equal(count(), 1);
      // A large one is committed before write() returns: another process sees it while this turn goes on.
      const large = file.write(insert, { bytes: 2 * 1024 * 1024 });
      assert.equal(count(), 2);
      await large;
      // Asked for by a write's own fn, inside its transaction: committed after it, in its own, not inside it. Were it
      // run inside, the rollback of the failing fn would take its row too, after its promise had said it was written.
      let nested: Promise<unknown> | undefined;
      await assert.rejects(
        file.write(() => {
          insert();
          nested = file.write(insert, { bytes: 2 * 1024 * 1024 });
          throw new Error('the outer write fails');
        }),
        /the outer write fails/,
      );
      await nested;
      assert.equal(count(), 3, 'the nested write is committed; the failed one is not');
    } finally {
      other.close();
    }
  });
});
