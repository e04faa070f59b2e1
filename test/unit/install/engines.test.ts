// `npm ci` must install without an engine warning (EBADENGINE) on the Node the README names: every package the
// lockfile installs declares a Node range that this Node satisfies, and so does Fennel's own package.json.
// (cookie 2, pulled in by light-my-request 6.8, wanted Node >= 22 while the README says Node 20: package.json
// overrides light-my-request to ~6.6.)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../../support/process.ts';

// npm's own range reader, as npm uses it for the check (a dependency of the toolchain already installed).
const semver = createRequire(import.meta.url)('semver') as { satisfies(version: string, range: string): boolean };

interface Lock {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[]; dev?: boolean }>;
}

describe('the install on the README\'s Node', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const named = /\(Node (\d+)\)/.exec(readme)?.[1];

  it('is the Node running the tests', () => {
    assert.ok(named, 'the README names a Node major version in its quick start, as (Node N)');
    assert.equal(process.versions.node.split('.')[0], named);
  });

  it('satisfies every engines.node range in the lockfile and package.json', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as Lock;
    const refused: string[] = [];
    for (const [path, pkg] of Object.entries(lock.packages)) {
      const range = Array.isArray(pkg.engines) ? undefined : pkg.engines?.node;
      if (range && !semver.satisfies(process.versions.node, range)) refused.push(`${path || 'fennel'}@${pkg.version ?? ''} wants node ${range}`);
    }
    assert.deepEqual(refused, [], `npm ci would warn EBADENGINE on Node ${process.versions.node}`);
  });
});
