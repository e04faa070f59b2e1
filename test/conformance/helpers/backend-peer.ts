// Child process for the backend suite's cross-process tests: opens the result backend at <url> (as a worker
// in another process does) and does one thing with it.
//   chord-join <group id> <size> <index,index,...>
//       prints READY, waits for a "GO" line on stdin, then records every listed member at once (its result is
//       memberResult(index)); prints "JOIN <json>" per call, then DONE. The json is the call's ChordJoin plus its
//       index, with `results` checked here and printed short: "none" if empty, "in order" if they are
//       joinedResults(size), else the results themselves (a line per call stays small on a pipe)
//   revoke <task id> <terminate 0|1> <expires at, ms since the epoch>
//       stores the revocation, prints REVOKED, exits
//   lease <name> <ttl ms> <holder,holder,...>
//       prints READY, waits for a "GO" line on stdin, then acquires the lease for every listed holder at once;
//       prints "LEASE <json>" per call ({holder: the caller, got: the holder the call returned}), then DONE
//   record <table> <key> <json>
//       puts the record, prints PUT, exits
//   watch
//       prints "REVOKED <json>" ({taskId, terminate, expiresAt in ms}) for every revocation it is told of, from the
//       start of the watch on (READY once the watch has started), until SIGTERM
// Exits 0 when done (the watch: on SIGTERM), after closing the backend.
// Usage: node --conditions=development --import tsx test/conformance/helpers/backend-peer.ts <url> <command> [args...]

import { createInterface } from 'node:readline';
import { isDeepStrictEqual } from 'node:util';
import { createBackend } from '../../../src/backends/index.ts';
import { joinedResults, memberResult } from './chord.ts';

const [url, command, ...args] = process.argv.slice(2);
const out = (line: string): void => void process.stdout.write(`${line}\n`);
if (!url || !command) {
  process.stderr.write('usage: backend-peer.ts <url> chord-join|revoke|lease|record|watch [args...]\n');
  process.exit(2);
}

const backend = createBackend(url, { pollIntervalMs: 50, resultExpiresSec: 86_400 });

/** Says READY, then waits for GO on stdin: the parent starts every child's race at once. */
async function readyThenGo(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  const go = new Promise<void>((resolve) => lines.on('line', (line) => line === 'GO' && resolve()));
  out('READY');
  await go;
  lines.close();
}

switch (command) {
  case 'chord-join': {
    const [group, size, list] = args;
    const indexes = (list ?? '').split(',').filter(Boolean).map(Number);
    const expected = joinedResults(Number(size));
    await readyThenGo();
    await Promise.all(
      indexes.map(async (index) => {
        const join = await backend.chordJoin!(group!, index, Number(size), JSON.stringify(memberResult(index)));
        const results = join.results.length === 0 ? 'none' : isDeepStrictEqual(join.results, expected) ? 'in order' : join.results;
        out(`JOIN ${JSON.stringify({ index, ...join, results })}`);
      }),
    );
    out('DONE');
    break;
  }
  case 'lease': {
    const [name, ttlMs, list] = args;
    const holders = (list ?? '').split(',').filter(Boolean);
    await readyThenGo();
    await Promise.all(
      holders.map(async (holder) => {
        const lease = await backend.acquireLease!(name!, holder, Number(ttlMs));
        out(`LEASE ${JSON.stringify({ holder, got: lease.holder })}`);
      }),
    );
    out('DONE');
    break;
  }
  case 'record': {
    const [table, key, json] = args;
    await backend.putRecord!(table!, key!, json!);
    out('PUT');
    break;
  }
  case 'revoke': {
    const [taskId, terminate, expiresAt] = args;
    await backend.revoke!({ taskId: taskId!, terminate: terminate === '1', expiresAt: new Date(Number(expiresAt)) });
    out('REVOKED');
    break;
  }
  case 'watch': {
    const stop = await backend.watchRevocations!((r) => out(`REVOKED ${JSON.stringify({ taskId: r.taskId, terminate: r.terminate, expiresAt: r.expiresAt.getTime() })}`));
    out('READY');
    const keepAlive = setInterval(() => {}, 60_000);
    await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
    clearInterval(keepAlive);
    await stop();
    break;
  }
  default:
    process.stderr.write(`unknown command ${command}\n`);
    process.exit(2);
}
await backend.close();
// Exits once everything written has reached the pipe (an exit with writes still queued drops them).
process.stdout.write('', () => process.exit(0));
