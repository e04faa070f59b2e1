// Temporary directories for tests that need real files (SQLite brokers and result stores): one fresh
// directory under os.tmpdir() per call, removed with everything in it by `remove()`.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export interface TempDir {
  readonly path: string;
  /** A path inside the directory. */
  file(name: string): string;
  /** Deletes the directory and its contents; safe to call twice. */
  remove(): void;
}

export function makeTempDir(prefix = 'fennel-test-'): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    file: (name) => join(path, name),
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}

/** Makes temp directories that are removed when the test file ends (an `after` hook registered here, once). */
export function tempDirsForFile(prefix: string): () => TempDir {
  const dirs: TempDir[] = [];
  after(() => {
    for (const dir of dirs) dir.remove();
  });
  return () => {
    const dir = makeTempDir(prefix);
    dirs.push(dir);
    return dir;
  };
}
