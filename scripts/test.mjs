// Runs the test suite with Node's own runner, one test file at a time, each in a runner of its own, so that
// what a file leaves behind is seen and blamed on that file, never on the next one:
//   - processes: every process a file starts inherits FENNEL_TEST_FILE=<file>; any still running once the
//     file is done (a worker, a pool slot, a Python worker, a redis-server) is listed, killed, and fails it;
//   - services: Redis (6379) and RabbitMQ (5672), if they answered before the file, must answer after it (a
//     file that restarts one gets a minute to bring it back); one left down fails the file.
//   - failures: the details of every failing test (its name, error and stack) are printed again at the end,
//     after the summary, so that the tail of a long CI log says what failed and why.
//   - hangs: --test-timeout (testTimeoutMs) bounds any one test, and the file as a whole: a file whose process
//     does not exit after its tests (a handle left open) fails with a timeout. Node's --test-force-exit is not
//     used: on Linux it can exit before the file's last verdicts reach the report (nodejs/node#64833), so a
//     file's count silently shrank. Every top-level test that starts must also end in the report, or the file fails.
// Node 20 has no --test globs, so the files are listed here.
// Usage: node scripts/test.mjs [folder ...]   (default: every folder under test/ except support/)
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { join, relative } from 'node:path';

const repo = new URL('..', import.meta.url).pathname;
const root = join(repo, 'test');
const folders = process.argv.slice(2);
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) {
      if (name !== 'support') walk(full);
    } else if (name.endsWith('.test.ts')) files.push(full);
  }
}
// Arguments are folders or single test files under test/ (`unit`, `conformance/redis.test.ts`, `test/unit/app`).
for (const folder of folders.length ? folders : readdirSync(root)) {
  const path = join(root, folder.replace(/^test\//, ''));
  try {
    const stat = statSync(path);
    if (stat.isDirectory() && folder !== 'support') walk(path);
    else if (stat.isFile() && path.endsWith('.test.ts')) files.push(path);
  } catch {}
}

const SERVICES = [
  { name: 'Redis', port: 6379 },
  { name: 'RabbitMQ', port: 5672 },
];
/**
 * The longest one test, and one file as a whole, may run (the runner's --test-timeout). The fault suite runs one
 * scenario of five faults per engine as one test, minutes on a loaded machine; everything else is bounded by the
 * default.
 */
function testTimeoutMs(tag) {
  return tag.startsWith('test/faults/') ? 900_000 : 300_000;
}
/** How long processes a file started may take to exit after it, before the file is blamed for them. */
const LEFTOVER_GRACE_MS = 5_000;
/** How long a service a file restarted may take to answer again before the file is blamed. */
const SERVICE_GRACE_MS = 60_000;

/** True if something accepts a TCP connection on 127.0.0.1:port within a second. */
function listening(port) {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => done(true));
  });
}

/** Processes whose environment carries this file's tag (Linux: /proc; elsewhere nothing is checked). */
function leftovers(tag) {
  let pids;
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  const found = [];
  for (const pid of pids) {
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      if (!environ.includes(`FENNEL_TEST_FILE=${tag}`)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue; // exited, waiting to be reaped
      found.push({ pid: Number(pid), command: readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim() });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** How many lines of one failing test's report are repeated at the end. */
const FAILURE_LINES = 40;

/**
 * The report of each failing test in a TAP log: a `not ok` line and the YAML block under it (error, stack),
 * up to FAILURE_LINES lines each. A failing suite is left out when a test inside it is reported (its own
 * block only says that a subtest failed).
 */
function failureReports(log) {
  const lines = log.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
  const reports = [];
  for (let i = 0; i < lines.length; i++) {
    const match = /^(\s*)not ok \d+ - (.*)$/.exec(lines[i]);
    if (!match) continue;
    const block = [lines[i].trim()];
    const end = `${match[1]}  ...`;
    for (let j = i + 1; j < lines.length && lines[j] !== end; j++) block.push(lines[j].slice(match[1].length));
    if (block.some((line) => /failureType: 'subtestsFailed'/.test(line))) continue;
    reports.push(block.length > FAILURE_LINES ? [...block.slice(0, FAILURE_LINES), `  … ${block.length - FAILURE_LINES} more lines`] : block);
  }
  return reports.map((block) => block.join('\n'));
}

/**
 * Top-level tests that started in a TAP log (`# Subtest: name` at the margin) but have no verdict there
 * (`ok N - name` or `not ok N - name`): a report cut short.
 */
function unreported(log) {
  const lines = log.replace(/\x1b\[[0-9;]*m/g, '').split('\n');
  const started = lines.filter((line) => line.startsWith('# Subtest: ')).length;
  const ended = lines.filter((line) => /^(not )?ok \d+ - /.test(line)).length;
  return Math.max(0, started - ended);
}

/**
 * Runs one file in a runner of its own, echoing what it prints; resolves with its exit code, its summary counts,
 * and how many of its top-level tests have no verdict in the report.
 */
function runFile(file) {
  const tag = relative(repo, file);
  const reporter = process.stdout.isTTY ? 'spec' : 'tap';
  const args = ['--conditions=development', '--import', 'tsx', '--test', '--test-concurrency=1', `--test-timeout=${testTimeoutMs(tag)}`, `--test-reporter=${reporter}`, file];
  const env = { ...process.env, FENNEL_TEST_FILE: tag, ...(process.stdout.isTTY ? { FORCE_COLOR: '1' } : {}) };
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
    let log = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      log += chunk.toString('utf8');
    });
    child.once('close', (code, signal) => {
      // The runner's summary at the end of its output: "# pass 12" (tap) or "ℹ pass 12" (spec).
      const summary = {};
      const tail = log.slice(-4096);
      for (const match of tail.replace(/\x1b\[[0-9;]*m/g, '').matchAll(/^(?:# |\u2139 )(tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) summary[match[1]] = Number(match[2]);
      resolve({
        code: code ?? (signal ? 1 : 0),
        summary,
        lost: reporter === 'tap' ? unreported(log) : 0,
        failures: reporter === 'tap' ? failureReports(log) : [],
      });
    });
  });
}

const counts = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
const failed = [];
const failures = [];
const started = Date.now();
const up = new Map();
for (const service of SERVICES) up.set(service.name, await listening(service.port));

for (const file of files) {
  const tag = relative(repo, file);
  const fileStarted = Date.now();
  const { code, summary, lost, failures: reports } = await runFile(file);
  for (const report of reports) failures.push(`${tag}\n${report}`);
  const problems = [];
  if (code !== 0) problems.push(`its tests failed (exit ${code})`);
  if (summary.tests === undefined) problems.push('its runner printed no summary');
  if (lost) problems.push(`${lost} of its top-level tests started but have no verdict in the report`);
  for (const key of Object.keys(counts)) counts[key] += summary[key] ?? 0;
  // What exits by itself once the file's process is gone (a pool slot whose parent died, tsx's esbuild
  // service) gets a few seconds to do so.
  let left = leftovers(tag);
  for (let waited = 0; left.length && waited < LEFTOVER_GRACE_MS; waited += 250) {
    await new Promise((r) => setTimeout(r, 250));
    left = leftovers(tag);
  }
  if (left.length) {
    problems.push(`it left ${left.length} process(es) running:\n${left.map((p) => `    ${p.pid} ${p.command.slice(0, 200)}`).join('\n')}`);
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
  }
  for (const service of SERVICES) {
    if (!up.get(service.name)) continue;
    const deadline = Date.now() + SERVICE_GRACE_MS;
    let answers = await listening(service.port);
    while (!answers && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      answers = await listening(service.port);
    }
    if (!answers) {
      problems.push(`it left ${service.name} down (127.0.0.1:${service.port} does not answer)`);
      up.set(service.name, false); // blame it once, not on every later file
    }
  }
  const seconds = ((Date.now() - fileStarted) / 1000).toFixed(1);
  if (problems.length) {
    failed.push(tag);
    process.stdout.write(`# FILE FAILED ${tag} (${seconds} s): ${problems.join('; ')}\n`);
  } else {
    process.stdout.write(`# file ok ${tag} (${seconds} s)\n`);
  }
}

const minutes = Math.floor((Date.now() - started) / 60_000);
const seconds = Math.round(((Date.now() - started) % 60_000) / 1000);
process.stdout.write(
  `\n# ${files.length} files, ${counts.tests} tests: ${counts.pass} pass, ${counts.fail} fail, ${counts.cancelled} cancelled, ${counts.skipped} skipped, ${counts.todo} todo; ${minutes} min ${seconds} s\n`,
);
if (failures.length) process.stdout.write(`# failing tests, again:\n${failures.map((f) => f.replace(/^/gm, '#   ')).join('\n#\n')}\n`);
if (failed.length) process.stdout.write(`# failed files:\n${failed.map((f) => `#   ${f}`).join('\n')}\n`);
process.exit(failed.length ? 1 : 0);
