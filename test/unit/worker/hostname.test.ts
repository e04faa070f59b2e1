// Worker node names (src/worker/hostname.ts): Celery's -n expansions, Fennel's %p, and a default that two workers
// on one machine do not share.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { DEFAULT_NODENAME, nodeName } from '../../../src/worker/hostname.ts';

const facts = { host: 'web3.eu.example.com', pid: 4711 };

describe('nodeName', () => {
  it('expands %h (the hostname), %n (its first label), %d (the rest), %p (the pid) and %%', () => {
    assert.equal(nodeName('w@%h', facts), 'w@web3.eu.example.com');
    assert.equal(nodeName('math.%n@%d', facts), 'math.web3@eu.example.com');
    assert.equal(nodeName('w%p@%n', facts), 'w4711@web3');
    assert.equal(nodeName('100%%@%n', facts), '100%@web3');
  });

  it('gives %d nothing for a hostname without a domain, and %n the whole of it', () => {
    assert.equal(nodeName('%n.%d@%h', { host: 'vm', pid: 1 }), 'vm.@vm');
  });

  it('takes a name without @ as the host, with the default name part (Celery\'s default_nodename)', () => {
    assert.equal(nodeName('vm2', facts), 'fennel@vm2');
    assert.equal(nodeName('%n', facts), 'fennel@web3');
  });

  it('defaults to fennel.<pid>@<hostname>: two processes on one host get two names', () => {
    assert.equal(DEFAULT_NODENAME, 'fennel.%p@%h');
    assert.equal(nodeName(DEFAULT_NODENAME, facts), 'fennel.4711@web3.eu.example.com');
    assert.notEqual(nodeName(DEFAULT_NODENAME, { host: 'vm', pid: 1 }), nodeName(DEFAULT_NODENAME, { host: 'vm', pid: 2 }));
  });

  it('refuses an unknown %x (Celery\'s %i and %I included: Fennel has no pool index in a name) and a trailing %', () => {
    for (const bad of ['w%i@%h', 'w%I@%h', 'w@%x', 'w@host%']) {
      assert.throws(() => nodeName(bad, facts), (e: unknown) => e instanceof ConfigError && /unknown %/.test(e.message) && /%h hostname/.test(e.message), bad);
    }
  });

  it('refuses a name whose name or host part is empty', () => {
    for (const bad of ['', '@%h', 'w@', 'w@%d']) {
      assert.throws(() => nodeName(bad, { host: 'vm', pid: 1 }), ConfigError, JSON.stringify(bad));
    }
  });
});
