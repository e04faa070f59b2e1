// `fennel names list` (src/cli/names.ts) against a real worker hosting actors (--actors) on SQLite: the actors with
// their class, host and availability, the metadata filter, the JSON form, the live hosts, and a bad filter.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NameListing, HostRecord } from '../../src/index.ts';
import { runCliToEnd, startWorker, stopProcess, tempDb, type RunningWorker } from '../support/process.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures/names-app.ts');
const db = tempDb();
process.env['FENNEL_BROKER_URL'] = db.url;
const { app, Counter } = await import('./fixtures/names-app.ts');
const env = { FENNEL_BROKER_URL: db.url };

describe('fennel names list', () => {
  let worker: RunningWorker;
  before(async () => {
    worker = await startWorker(FIXTURE, db.url, ['-P', 'async', '-c', '2', '--actors', '-n', 'names-host@%h']);
    await Counter.create({ name: 'hits', meta: { team: 'web' } });
    await Counter.create({ name: 'misses', meta: { team: 'db', tier: 'cold' } });
  });
  after(async () => {
    await stopProcess(worker);
    await app.close();
    db.cleanup();
  });

  it('prints each actor (name, class, mode, host, availability, restarts, metadata) and the live hosts', async () => {
    const run = await runCliToEnd(['names', 'list'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    const host = run.stdout.find((l) => l.startsWith('1 live actor host(s)'));
    assert.match(host ?? '', /^1 live actor host\(s\): names-host@\S+ \(2 actor\(s\), 0 call\(s\)\)$/);
    const rows = run.stdout.filter((l) => l.includes('\tCounter\t')).map((l) => l.split('\t'));
    assert.deepEqual(rows.map((r) => [r[0], r[1], r[2], r[4], r[5], r[6]]), [
      ['hits', 'Counter', 'single', 'available', 'restarts=0', 'team=web'],
      ['misses', 'Counter', 'single', 'available', 'restarts=0', 'team=db,tier=cold'],
    ]);
    assert.ok(rows.every((r) => r[3]!.startsWith('names-host@')), 'each on the host');
  });

  it('filters by prefix and metadata, and prints JSON with --json', async () => {
    const run = await runCliToEnd(['names', 'list', '--meta', 'team=db', 'tier=cold', '--json'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    const doc = JSON.parse(run.stdout.join('\n')) as { actors: NameListing[]; hosts: HostRecord[] };
    assert.deepEqual(doc.actors.map((a) => a.name), ['misses']);
    assert.equal(doc.hosts.length, 1);
    const prefixed = await runCliToEnd(['names', 'list', '--prefix', 'hi'], env);
    assert.deepEqual(prefixed.stdout.filter((l) => l.includes('\tCounter\t')).map((l) => l.split('\t')[0]), ['hits']);
  });

  it('unregister forgets a name: not listed, not found by lookup, and a name never held is false', async () => {
    await Counter.create({ name: 'temporary' });
    assert.equal(await app.names.unregister('temporary'), true);
    assert.equal(await app.names.unregister('temporary'), false);
    assert.equal(await app.names.unregister('never-created'), false);
    assert.deepEqual((await app.names.list({ prefix: 'temp' })).map((a) => a.name), []);
    await assert.rejects(Counter.lookup('temporary'), { name: 'ActorNotFoundError' });
    const run = await runCliToEnd(['names', 'list', '--prefix', 'temp'], env);
    assert.deepEqual(run.stdout.filter((l) => l.includes('\tCounter\t')), []);
  });

  it('refuses a metadata filter that is not key=value, with one line and exit code 2', async () => {
    const run = await runCliToEnd(['names', 'list', '--meta', 'team'], env);
    assert.equal(run.code, 2);
    assert.deepEqual(run.stderr, ["fennel: --meta takes key=value pairs (got 'team')"]);
  });
});
