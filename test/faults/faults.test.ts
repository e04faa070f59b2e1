// The fault-injection suite (see driver.ts): the same scenario on every engine. SQLite's file survives any
// process; Redis runs as a private append-only redis-server on port 6392 (fsync always), so it can be
// restarted without touching the shared one; RabbitMQ is the local node (connections closed, the app
// stopped and started); NATS is a private nats-server with JetStream (a store in this file's temp dir, a free
// port), SIGKILLed and started again on the same store. Set FENNEL_FAULTS_REPORT=FAULTS.md (npm run faults) to
// write the report. The three-node NATS cluster has a file of its own (nats-cluster.test.ts).

import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { ROOT, track } from '../support/process.ts';
import { makeTempDir } from '../support/tmp.ts';
import { RABBIT_URL, rabbitAnswers, rabbitSkipReason, REDIS_DB, redisAnswers, redisSkipReason, redisUrlForTest } from '../support/services.ts';
import { removeRabbitQueues } from '../support/rabbit.ts';
import { natsServerSkipReason, startNats, type PrivateNats } from '../support/nats.ts';
import { faultsMarkdown, runFaultScenario, writeFaultsReport, type FaultReport } from './driver.ts';

const TASKS = 1000;
/** NATS: the 3,000 published up front (the driver tops the backlog up from there while faults run). */
const NATS_TASKS = 3000;
const SLEEP_MS = 5;
// FENNEL_FAULTS_REDIS_PORT moves it, so a repeated run of this file can go on beside the whole suite's.
const PRIVATE_PORT = Number(process.env['FENNEL_FAULTS_REDIS_PORT'] ?? 6392);
const dir = makeTempDir('fennel-faults-');
const LOCK_HOLD_MS = 8_000;
/** Takes SQLite's write lock on the file argv[1] (BEGIN EXCLUSIVE), says so, holds it argv[2] ms, then commits. */
const LOCK_HOLDER = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1], { timeout: 60000 });
db.exec('BEGIN EXCLUSIVE');
process.stdout.write('locked\\n');
setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[2]));
`;
const reports: FaultReport[] = [];
const run = Date.now().toString(36);
const redisSkip = await redisSkipReason();
const amqpSkip = (await rabbitSkipReason()) || redisSkip;
const natsSkip = natsServerSkipReason();

after(() => {
  const target = process.env['FENNEL_FAULTS_REPORT'];
  // The cluster's section and what follows the hand-kept marker (repeated runs, written by a person) are kept.
  if (target && reports.length) writeFaultsReport(target, 'engines', faultsMarkdown(reports, 'npm run faults'));
  for (const r of reports) process.stdout.write(`# faults ${r.engine}: enqueued ${r.enqueued}, completed ${r.completed}, lost ${r.lost}, run twice ${r.duplicates}, ${(r.totalMs / 1000).toFixed(1)} s\n`);
  dir.remove();
});

function check(report: FaultReport): void {
  reports.push(report);
  assert.equal(report.lost, 0, `${report.lost} task(s) lost on ${report.engine}`);
  assert.equal(report.completed, report.enqueued);
  assert.equal(report.sigtermExit, 'code 0', `the SIGTERMed worker drained and exited cleanly; its last output:\n${report.sigtermOutput.join('\n')}`);
}

describe('fault injection', () => {
  it('sqlite: no task lost', async () => {
    const file = dir.file('faults.db');
    const report = await runFaultScenario(
      {
        engine: 'sqlite',
        brokerUrl: `sqlite://${file}`,
        backendUrl: `sqlite://${file}`,
        brokerFaults: [
          {
            // Longer than the engine's 5 s busy timeout: claims, stores and acks fail meanwhile, and must resume.
            label: `another process holds the write lock for ${LOCK_HOLD_MS / 1000} s`,
            inject: async () => {
              const holder = track(spawn(process.execPath, ['-e', LOCK_HOLDER, file, String(LOCK_HOLD_MS)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }));
              await new Promise<void>((resolve, reject) => {
                holder.stdout.once('data', () => resolve()); // "locked"
                holder.once('exit', (code) => reject(new Error(`the lock holder exited (${code}) before taking the lock`)));
              });
              const exit = await new Promise<number | null>((resolve) => holder.once('exit', resolve));
              assert.equal(exit, 0, 'the lock holder released the lock and exited');
            },
          },
        ],
        notApplicable: ['connection breaks and broker restarts: there is no server; the file outlives every process (the SIGKILLs above)'],
      },
      { tasks: TASKS, sleepMs: SLEEP_MS, dir: dir.path, queue: `faults-${run}` },
    );
    check(report);
  });

  describe('redis', { skip: redisSkip }, () => {
    let server: ChildProcess | undefined;
    const start = async (): Promise<void> => {
      server = track(spawn('redis-server', ['--port', String(PRIVATE_PORT), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--dir', dir.path], { stdio: 'ignore' }));
      const deadline = Date.now() + 20_000;
      while (!(await redisAnswers(PRIVATE_PORT, 300))) {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${PRIVATE_PORT} did not start`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const stop = async (): Promise<void> => {
      const s = server;
      if (!s || s.exitCode !== null) return;
      const exited = new Promise((r) => s.once('exit', r));
      s.kill('SIGTERM'); // SHUTDOWN: the append-only file is fsynced, then it exits
      await exited;
    };
    after(stop);

    it('redis: no task lost', async () => {
      if (await redisAnswers(PRIVATE_PORT, 300)) throw new Error(`something already answers on port ${PRIVATE_PORT}; the fault suite needs it`);
      await start();
      const url = redisUrlForTest(0, PRIVATE_PORT);
      const report = await runFaultScenario(
        {
          engine: 'redis',
          brokerUrl: url,
          backendUrl: url,
          brokerFaults: [
            {
              label: 'CLIENT KILL every connection',
              inject: async () => {
                const admin = new Redis(url, { maxRetriesPerRequest: 1 });
                try {
                  await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
                  await admin.client('KILL', 'TYPE', 'pubsub');
                } finally {
                  admin.disconnect();
                }
              },
            },
            { label: 'restart redis-server (append-only file kept)', inject: async () => (await stop(), await start()) },
          ],
          notApplicable: [],
        },
        { tasks: TASKS, sleepMs: SLEEP_MS, dir: dir.path, queue: `faults-${run}` },
      );
      check(report);
    });
  });

  describe('amqp', { skip: amqpSkip }, () => {
    const queue = `faults-${run}`;
    const rabbitmqctl = (...args: string[]): Promise<unknown> => promisify(execFile)('rabbitmqctl', args, { timeout: 120_000 });
    /** Starts the RabbitMQ app (a no-op when it runs) and waits until it answers, so no later test finds it down. */
    const startRabbit = async (): Promise<void> => {
      await rabbitmqctl('start_app');
      await rabbitmqctl('await_startup', '--timeout', '120');
      const deadline = Date.now() + 60_000;
      while (!(await rabbitAnswers())) {
        if (Date.now() > deadline) throw new Error('RabbitMQ does not answer after start_app');
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    // Whatever happened in the scenario (a timeout in the middle of a fault), RabbitMQ runs again afterwards.
    after(async () => {
      await startRabbit();
      await removeRabbitQueues([queue], queue);
    });

    it('amqp: no task lost', async () => {
      const report = await runFaultScenario(
        {
          engine: 'amqp',
          brokerUrl: RABBIT_URL,
          backendUrl: redisUrlForTest(REDIS_DB.semantics),
          brokerFaults: [
            { label: 'rabbitmqctl close_all_connections', inject: async () => void (await rabbitmqctl('close_all_connections', 'fault injection')) },
            {
              label: 'rabbitmqctl stop_app / start_app',
              inject: async () => {
                try {
                  await rabbitmqctl('stop_app');
                } finally {
                  await startRabbit();
                }
              },
            },
          ],
          notApplicable: [],
        },
        { tasks: TASKS, sleepMs: SLEEP_MS, dir: dir.path, queue },
      );
      check(report);
    });
  });

  describe('nats', { skip: natsSkip }, () => {
    let server: PrivateNats | undefined;
    after(() => server?.stop());

    it('nats: no task lost', async () => {
      server = await startNats({ storeDir: dir.file('nats-store') });
      const url = `${server.url}?prefix=faults`;
      const report = await runFaultScenario(
        {
          engine: 'nats',
          brokerUrl: url,
          backendUrl: url,
          brokerFaults: [{ label: 'SIGKILL nats-server, restarted on the same store', inject: () => server!.restart() }],
          notApplicable: ['breaking every connection without a restart: nats-server 2.9 has no CLIENT KILL (kicking a client needs a system account); the SIGKILL of the server breaks them all'],
        },
        { tasks: NATS_TASKS, sleepMs: SLEEP_MS, dir: dir.path, queue: `faults-${run}` },
      );
      check(report);
    });
  });
});
