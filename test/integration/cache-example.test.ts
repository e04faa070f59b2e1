// examples/cache/main.ts end to end, as a user runs it, with small numbers: 3 rounds × 200 calls of the slow square
// over x in 0..99, through cache.wrap on the three memcached servers it starts itself, and as a memoized task on
// servers the test starts. Nothing here is timed (the round times are printed, never asserted), and the counts are
// checked only for their trend: a cache operation that times out on a busy machine is a miss, and one more computation.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { memcachedSkipReason, startMemcached, type RunningMemcached } from '../support/memcached.ts';
import { runScriptToEnd, waitFor } from '../support/process.ts';
import { tcpAccepts } from '../support/services.ts';

const SMALL = ['--rounds', '3', '--calls', '200', '--range', '100'];
const ROUND = /^round +(\d+) +(\d+\.\d{3}) s +computed +(\d+) +from the cache +(\d+) \( *(\d+\.\d)%\)$/;

interface Round {
  round: number;
  computed: number;
  cached: number;
}

/** The round lines of a run's output; fails on a line that starts like one and does not parse. */
function roundsOf(stdout: string): Round[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('round '))
    .map((line) => {
      const m = ROUND.exec(line);
      assert.ok(m, `not a round line: ${JSON.stringify(line)}`);
      return { round: Number(m[1]), computed: Number(m[3]), cached: Number(m[4]) };
    });
}

/** Three rounds of 200, each computing fewer squares than the one before, the first most of the 100 values. */
function checkRounds(stdout: string): Round[] {
  const rounds = roundsOf(stdout);
  assert.deepEqual(
    rounds.map((r) => r.round),
    [1, 2, 3],
  );
  for (const r of rounds) assert.equal(r.computed + r.cached, 200);
  // Round 1 draws about 100·(1 − e^-2) ≈ 86 distinct values of 100, and computes each at least once.
  assert.ok(rounds[0]!.computed >= 50 && rounds[0]!.computed <= 200, `round 1 computed ${rounds[0]!.computed}`);
  assert.ok(rounds[1]!.computed < rounds[0]!.computed, `round 2 computed ${rounds[1]!.computed}, round 1 ${rounds[0]!.computed}`);
  assert.ok(rounds[2]!.computed < rounds[1]!.computed, `round 3 computed ${rounds[2]!.computed}, round 2 ${rounds[1]!.computed}`);
  assert.ok(rounds[2]!.cached > rounds[0]!.cached);
  assert.doesNotMatch(stdout, /WRONG/);
  assert.match(stdout, /^first round \d+\.\d{3} s, last \d+\.\d{3} s: [\d.]+× faster$/m);
  return rounds;
}

const skip = memcachedSkipReason();

describe('examples/cache/main.ts', { skip }, () => {
  const servers: RunningMemcached[] = [];

  before(async () => {
    for (let i = 0; i < 3; i++) servers.push(await startMemcached());
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('starts three memcached servers, computes fewer squares each round, and stops the servers', async () => {
    const first = await runScriptToEnd('examples/cache/main.ts', SMALL);
    assert.equal(first.code, 0, `exit code ${first.code}; stderr:\n${first.stderr}`);
    checkRounds(first.stdout);
    const url = /^cache: memcached:\/\/(\S+) \(3 private memcached servers started here\)$/m.exec(first.stdout);
    assert.ok(url, `no cache line in:\n${first.stdout}`);
    const addresses = url[1]!.split(',');
    assert.equal(addresses.length, 3);
    assert.match(first.stdout, /^memcached: \d+ hits, \d+ misses, \d+ errors, \d+ values stored$/m);
    // The servers it started are gone with it.
    await waitFor(async () => (await Promise.all(addresses.map((a) => tcpAccepts(Number(a.split(':')[1]))))).every((up) => !up), `the example's memcached servers (${addresses.join(', ')}) to stop`, 10_000);
  });

  it('runs the calls as a memoized task on the servers given with --servers', async () => {
    const run = await runScriptToEnd('examples/cache/main.ts', [...SMALL, '--tasks', '--servers', servers.map((s) => s.address).join(',')]);
    assert.equal(run.code, 0, `exit code ${run.code}; stderr:\n${run.stderr}`);
    assert.match(run.stdout, /^cache: memcached:\/\/\S+ \(given with --servers\)$/m);
    assert.match(run.stdout, /^each call: await square\.delay\(x\), a memoized task/m);
    checkRounds(run.stdout);
    // The servers given are left running.
    assert.ok((await Promise.all(servers.map((s) => tcpAccepts(Number(s.address.split(':')[1]))))).every(Boolean));
  });
});
