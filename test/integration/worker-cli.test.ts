// `fennel worker` as a person and a script see it, in its own process: the readable log (a banner, then one line
// per event) with --log-format pretty, JSON when its output is piped, "worker ready" at any level in both; names
// from -n and a default that two workers on one machine do not share; -b/--backend, which win over the
// environment and over a module that names its broker in code, for the worker and for its pool slots.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { Fennel } from 'fennel';
import { FENNEL_VERSION } from '../../src/version.ts';
import { ROOT, runCli, runCliToEnd, stopProcess, tempDb, uniqueQueue, type RunningWorker } from '../support/process.ts';

const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');
const db = tempDb();
const env = { FENNEL_BROKER_URL: db.url };
const workers: RunningWorker[] = [];
const dbs = [db];
const apps: Fennel[] = [];

after(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  await Promise.all(apps.map((a) => a.close()));
  for (const d of dbs) d.cleanup();
});

interface Started extends RunningWorker {
  /** Everything printed on stdout so far, as it was written (runCli's `lines` mix in stderr). */
  stdout(): string;
}

/** Starts `fennel worker` and waits for its ready line. */
async function worker(args: string[], extraEnv: Record<string, string> = env): Promise<Started> {
  const w = runCli(['worker', ...args], extraEnv);
  workers.push(w);
  let out = '';
  w.child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await w.waitForLine(/worker ready/);
  return Object.assign(w, { stdout: () => out });
}

/** Stops a worker warmly and waits until it has exited, so everything it will ever print has been read. */
async function stop(w: RunningWorker): Promise<void> {
  w.child.kill('SIGTERM');
  const { code } = await w.exited;
  assert.equal(code, 0);
}

function app(url: string): Fennel {
  const a = new Fennel({ broker: url });
  apps.push(a);
  return a;
}

/** A tasks module written at run time (outside the repository, so it cannot disturb the type-check or lint). */
function module(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `import { Fennel, currentTask } from '${pathToFileURL(join(ROOT, 'src/index.ts')).href}';\n${body}\n`);
  return path;
}

const TIME = String.raw`\[\d\d:\d\d:\d\d\.\d{3}\]`;
const HOST = hostname();
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('fennel worker: log formats', () => {
  it('--log-format pretty prints a banner, then one readable line per event, even into a pipe', async () => {
    const queue = uniqueQueue('pretty');
    const w = await worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', queue, '--log-format', 'pretty', '-n', 'pretty@%h']);
    const sent = await runCliToEnd(['call', 'test.add', '2', '3', '-Q', queue], env);
    const id = sent.stdout[0]!;
    assert.equal(await app(db.url).asyncResult(id).get({ timeoutMs: 30_000 }), 5);
    const failed = await runCliToEnd(['call', 'test.fail', 'nope', '-Q', queue, '--wait'], env);
    assert.equal(failed.code, 1);
    await stop(w);
    const out = w.stdout();
    assert.match(out, new RegExp(`^ -+ ${escape(`pretty@${HOST}`)} v${escape(FENNEL_VERSION)} \\(node `, 'm'));
    assert.match(out, new RegExp(`^\\.> transport: +${escape(db.url)}$`, 'm'));
    assert.match(out, new RegExp(`^\\.> results: +${escape(db.url)}$`, 'm'));
    assert.match(out, /^\.> concurrency: +1 \(async pool\)$/m);
    assert.match(out, new RegExp(`^\\[queues\\]\\n\\.> ${queue}$`, 'm'));
    assert.match(out, /^\[tasks\]\n(  \. .+\n)*  \. test\.add\n/m);
    const lines = out.split('\n');
    assert.ok(lines.some((l) => new RegExp(`^${TIME} INFO: worker ready: ${escape(`pretty@${HOST}`)}, async pool × 1, queues ${queue}$`).test(l)), out);
    assert.ok(lines.some((l) => new RegExp(`^${TIME} INFO: Task test\\.add\\[${id.slice(0, 8)}…\\] succeeded in \\d+(\\.\\d+)? ms: 5$`).test(l)), out);
    assert.ok(lines.some((l) => new RegExp(`^${TIME} ERROR: Task test\\.fail\\[[0-9a-f]{8}…\\] raised RangeError: nope \\(ran \\d+(\\.\\d+)? m?s\\)$`).test(l)), out);
    assert.ok(lines.some((l) => new RegExp(`^${TIME} INFO: worker stopped$`).test(l)), out);
    assert.ok(!lines.some((l) => l.startsWith('{')), `no JSON line:\n${out}`);
  });

  it('writes JSON lines, no banner, when its output is piped and no format is given', async () => {
    const queue = uniqueQueue('json');
    const w = await worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', queue]);
    const run = await runCliToEnd(['call', 'test.add', '2', '3', '-Q', queue, '--wait'], env);
    assert.deepEqual(run.stdout, ['5']);
    await stop(w);
    const lines = w.stdout().split('\n').filter((l) => l.trim() !== '');
    const objects = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(objects.some((o) => String(o['msg']).startsWith('worker ready')));
    assert.ok(objects.some((o) => o['task'] === 'test.add' && /succeeded in/.test(String(o['msg']))));
    assert.equal(typeof objects[0]!['time'], 'number', 'pino time, for machines');
  });

  for (const format of ['json', 'pretty']) {
    it(`prints "worker ready" at log level warn, and no info lines, with --log-format ${format}`, async () => {
      const queue = uniqueQueue('quiet');
      const w = await worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', queue, '-l', 'warn', '--log-format', format]);
      const run = await runCliToEnd(['call', 'test.add', '2', '3', '-Q', queue, '--wait'], env);
      assert.deepEqual(run.stdout, ['5']);
      await stop(w);
      const out = w.stdout();
      assert.match(out, /worker ready: /);
      assert.doesNotMatch(out, /received|succeeded/, 'the per-task lines are info');
    });
  }

  it('refuses an unknown --log-format with one line and exit code 2', async () => {
    const run = await runCliToEnd(['worker', '--app', TASKS, '--log-format', 'xml'], env);
    assert.equal(run.code, 2);
    assert.deepEqual(run.stderr, ["fennel: --log-format must be pretty or json (got 'xml')"]);
  });
});

describe('fennel worker: names', () => {
  it('names two workers on one machine apart by default: fennel.<pid>@<hostname>', async () => {
    const [a, b] = await Promise.all([worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', uniqueQueue('a')]), worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', uniqueQueue('b')])]);
    const nameOf = (w: Started): unknown => (JSON.parse(w.stdout().split('\n').find((l) => l.includes('worker ready'))!) as Record<string, unknown>)['worker'];
    assert.equal(nameOf(a), `fennel.${a.child.pid}@${HOST}`);
    assert.equal(nameOf(b), `fennel.${b.child.pid}@${HOST}`);
    await Promise.all([stop(a), stop(b)]);
  });

  it('-n expands %n, %h and %p, and the name is what stored results say ran the task', async () => {
    const queue = uniqueQueue('named');
    const w = await worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', queue, '-n', 'math-%p.%n@%h']);
    const expected = `math-${w.child.pid}.${HOST.split('.')[0]}@${HOST}`;
    const sent = await runCliToEnd(['call', 'test.add', '2', '3', '-Q', queue], env);
    const results = app(db.url);
    assert.equal(await results.asyncResult(sent.stdout[0]!).get({ timeoutMs: 30_000 }), 5);
    assert.equal((await results.backend.get(sent.stdout[0]!))?.worker, expected);
    await stop(w);
  });

  it('refuses a name with an unknown %x with one line and exit code 2', async () => {
    const run = await runCliToEnd(['worker', '--app', TASKS, '-n', 'w%i@%h'], env);
    assert.equal(run.code, 2);
    assert.equal(run.stderr.length, 1, run.stderr.join('\n'));
    assert.match(run.stderr[0]!, /^fennel: worker name "w%i@%h": unknown %i \(known: %h hostname/);
  });
});

describe('fennel worker: -b and --backend', () => {
  it('consumes from and stores in the -b URL, not $FENNEL_BROKER_URL, and its pool slots send there too', async () => {
    const target = tempDb();
    const elsewhere = tempDb();
    dbs.push(target, elsewhere);
    const tasks = module(
      target.dir,
      'nested.ts',
      `export const app = new Fennel();
export const add = app.task('nested.add', (a: number, b: number) => a + b);
/** Sends a task from task code, in a pool slot: it must reach the worker's broker too. */
export const outer = app.task('nested.outer', async (a: number) => {
  const inner = add.applyAsync([a, 1], { queue: currentTask().queue ?? undefined });
  await inner.sent;
  return inner.id;
});`,
    );
    const queue = uniqueQueue('dash-b');
    const envElsewhere = { FENNEL_BROKER_URL: elsewhere.url };
    const w = await worker(['--app', tasks, '-P', 'process', '-c', '1', '-Q', queue, '-b', target.url, '--log-format', 'json'], envElsewhere);
    const direct = await runCliToEnd(['call', 'nested.add', '2', '3', '-Q', queue, '-b', target.url, '--wait'], envElsewhere);
    assert.equal(direct.code, 0, direct.stderr.join('\n'));
    assert.deepEqual(direct.stdout, ['5']);
    const outer = await runCliToEnd(['call', 'nested.outer', '4', '-Q', queue, '-b', target.url, '--wait'], envElsewhere);
    assert.equal(outer.code, 0, outer.stderr.join('\n'));
    const innerId = JSON.parse(outer.stdout[0]!) as string;
    assert.equal(await app(target.url).asyncResult(innerId).get({ timeoutMs: 30_000 }), 5);
    assert.equal(await app(elsewhere.url).transport.depth(queue), 0, 'nothing went to the environment\'s broker');
    await stop(w);
  });

  it('overrides a broker the module names in code, and says that task code still uses the module\'s', async () => {
    const target = tempDb();
    const inCode = tempDb();
    dbs.push(target, inCode);
    const tasks = module(target.dir, 'pinned.ts', `export const app = new Fennel({ broker: ${JSON.stringify(inCode.url)} });\nexport const add = app.task('pinned.add', (a: number, b: number) => a + b);`);
    const queue = uniqueQueue('pinned');
    const w = await worker(['--app', tasks, '-P', 'async', '-c', '1', '-Q', queue, '-b', target.url]);
    const run = await runCliToEnd(['call', 'pinned.add', '2', '3', '-Q', queue, '-b', target.url, '--wait'], env);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.deepEqual(run.stdout, ['5']);
    const warning = w.lines.find((l) => l.includes('sets its broker in code'));
    assert.ok(warning, w.lines.join('\n'));
    assert.ok(warning.includes(inCode.url) && warning.includes(target.url), warning);
    const ready = JSON.parse(w.stdout().split('\n').find((l) => l.includes('worker ready'))!) as Record<string, unknown>;
    assert.equal(ready['broker'], target.url);
    assert.equal(ready['backend'], target.url, 'the backend, the broker\'s URL by default, follows -b');
    await stop(w);
  });

  it('--backend stores results apart from the broker', async () => {
    const broker = tempDb();
    const results = tempDb();
    dbs.push(broker, results);
    const queue = uniqueQueue('backend');
    const w = await worker(['--app', TASKS, '-P', 'async', '-c', '1', '-Q', queue, '-b', broker.url, '--backend', results.url]);
    const run = await runCliToEnd(['call', 'test.add', '20', '22', '-Q', queue, '-b', broker.url, '--backend', results.url, '--wait'], env);
    assert.deepEqual(run.stdout, ['42']);
    await stop(w);
    const onBroker = app(broker.url);
    assert.equal((await onBroker.backend.countByState())['SUCCESS'] ?? 0, 0, 'no result in the broker\'s file');
  });
});

describe('fennel worker: bad -b', () => {
  it('refuses a -b that is not a URL with one line naming --broker, and exit code 2', async () => {
    const run = await runCliToEnd(['worker', '--app', TASKS, '-b', 'fennel.db'], env);
    assert.equal(run.code, 2);
    assert.equal(run.stderr.length, 1, run.stderr.join('\n'));
    assert.match(run.stderr[0]!, /^fennel: --broker is invalid: /);
  });
});

describe('fennel worker --help', () => {
  it('documents -n, --log-format, -b and --backend', async () => {
    const run = await runCliToEnd(['worker', '--help'], env);
    assert.equal(run.code, 0);
    const help = run.stdout.join(' ').replace(/\s+/g, ' '); // commander wraps descriptions
    assert.match(help, /-n, --hostname <name> .*%h hostname, %n its first label, %d its domain, %p pid/);
    assert.match(help, /\(default: "fennel\.%p@%h"\)/);
    assert.match(help, /--log-format <format> pretty .*\| json/);
    assert.match(help, /-b, --broker <url>/);
    assert.match(help, /--backend <url>/);
  });
});
