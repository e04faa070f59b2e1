// NATS JetStream surviving the loss of a broker node: three nats-server processes on loopback, routed into one
// cluster (each with a JetStream store in a temp dir), started and stopped by this file; every stream and bucket
// Fennel makes has replicas=3. Apps (producer, two `fennel worker -P process -c 2`, results on the same cluster)
// use nats://n1,n2,n3?replicas=3. 5,000 tasks (faults.square: appends its id to a ledger, returns n²) run while
//   1. a node that does not lead the task stream is SIGKILLed, 2. it is restarted on its store (and catches up),
//   3. the node leading the task stream is SIGKILLed (a new leader is elected from the two left).
// Then: none lost (every confirmed id in the ledger), every result read back through the result backend is n²,
// runs more than once counted, publishes the producer reported as failed counted, and per event the time until the
// ledger moved on by 50 runs. Nothing about speed is asserted. FENNEL_FAULTS_REPORT=FAULTS.md writes the section
// "NATS JetStream, three nodes (replicas=3)" of the report (driver.ts writeFaultsReport).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { NatsLink } from '../../src/clients/nats/connection.ts';
import { Fennel } from '../../src/index.ts';
import { natsServerSkipReason, startNats, type PrivateNats } from '../support/nats.ts';
import { runCli, type RunningWorker } from '../support/process.ts';
import { freePort } from '../support/services.ts';
import { makeTempDir } from '../support/tmp.ts';
import { distinctRuns, Feeder, ledgerIds, RECOVERED_AFTER, TASKS, trace, until, WORKER_FLAGS, writeFaultsReport } from './driver.ts';

const TOTAL = 5_000;
const SLEEP_MS = 5;
const PREFIX = 'cluster';
const STREAM = `${PREFIX.toUpperCase()}_TASKS`;
const QUEUE = 'cluster';
/** Distinct runs at which each event happens. */
const KILL_FOLLOWER_AT = 1_000;
const RESTART_AT = 2_000;
const KILL_LEADER_AT = 3_000;
const skip = natsServerSkipReason();
const dir = makeTempDir('fennel-nats-cluster-');

interface Node {
  name: string;
  server: PrivateNats;
}

interface ClusterEvent {
  event: string;
  node: string;
  recoverMs: number;
  /** Extra figures for the report (how long the restarted node took to catch up, who leads after). */
  note: string;
}

after(() => dir.remove());

/** `count` distinct free ports (freePort may hand the same one out twice in a row). */
async function distinctPorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** Tries `step` until it succeeds (elections, a node away), rethrowing its last error after `timeoutMs`. */
async function retrying<T>(step: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await step();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

describe('NATS JetStream, three nodes (replicas=3)', { skip }, () => {
  const nodes: Node[] = [];
  const workers: RunningWorker[] = [];
  let app: Fennel | undefined;
  let admin: NatsLink | undefined;

  after(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    // Bounded: a connection whose servers are all gone may not finish draining.
    const bounded = (p: Promise<unknown> | undefined): Promise<unknown> => Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await bounded(app?.close());
    await bounded(admin?.close());
    await Promise.all(nodes.map((n) => n.server.stop()));
  });

  it('5,000 tasks through the loss of a follower, its return, and the loss of the stream leader: none lost, every result right', async () => {
    const version = execFileSync('nats-server', ['--version'], { encoding: 'utf8' }).trim();
    const [c1, c2, c3, r1, r2, r3] = await distinctPorts(6);
    const clientPorts = [c1!, c2!, c3!];
    const routePorts = [r1!, r2!, r3!];
    const started = await Promise.all(
      clientPorts.map((port, i) =>
        startNats({ storeDir: dir.file(`n${i + 1}`), port, cluster: { name: `n${i + 1}`, port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) } }),
      ),
    );
    started.forEach((server, i) => nodes.push({ name: `n${i + 1}`, server }));
    const url = `nats://${clientPorts.map((p) => `127.0.0.1:${p}`).join(',')}?replicas=3&prefix=${PREFIX}`;

    // JetStream answers once the cluster has elected a meta leader.
    const link = (admin = new NatsLink(url, { connectTimeoutMs: 5_000, name: 'cluster-admin' }));
    const t0 = Date.now();
    await retrying(async () => (await link.handles()).jsm.getAccountInfo(), 60_000);
    trace(`JetStream meta leader after ${Date.now() - t0} ms`);
    const streamInfo = () => retrying(async () => (await link.handles()).jsm.streams.info(STREAM), 60_000);
    const nodeNamed = (name: string | undefined): Node => {
      const node = nodes.find((n) => n.name === name);
      if (!node) throw new Error(`no node named '${name}' (the stream's leader as JetStream reports it)`);
      return node;
    };

    const ledger = join(dir.path, 'cluster-ledger.txt');
    writeFileSync(ledger, '');
    const env = { FENNEL_BROKER_URL: url, FENNEL_RESULT_BACKEND: url, FENNEL_VISIBILITY_TIMEOUT_SEC: '3', FENNEL_POLL_INTERVAL_MS: '100' };
    const startWorker = async (): Promise<void> => {
      const w = runCli(['worker', '--app', TASKS, '-Q', QUEUE, ...WORKER_FLAGS], env);
      workers.push(w);
      await w.waitForLine(/worker ready/, 60_000);
    };
    const producer = (app = new Fennel({ broker: url, backend: url, pollIntervalMs: 100 }));
    // Each id's argument, to check its result by.
    const argument = new Map<string, number>();
    const feeder = new Feeder({
      send: (n) => {
        const result = producer.sendTask('faults.square', [ledger, SLEEP_MS, n], { queue: QUEUE });
        argument.set(result.id, n);
        return result;
      },
      ran: () => distinctRuns(ledger),
      limit: TOTAL,
    });

    await startWorker(); // its consumer makes the stream (replicas=3) and the queue's consumer
    await startWorker();
    const started0 = Date.now();
    await feeder.publish(1_000);
    feeder.start();

    const events: ClusterEvent[] = [];
    /** Waits for `at` distinct runs, does `step`, and measures from its start until the ledger moved on by RECOVERED_AFTER. */
    const event = async (at: number, label: string, step: () => Promise<{ node: string; note?: string }>): Promise<void> => {
      await until(() => distinctRuns(ledger) >= at, `${at} tasks run before '${label}'`, 300_000);
      const before = ledgerIds(ledger).length;
      const begun = Date.now();
      let recoveredAt = 0;
      const recovered = until(() => ledgerIds(ledger).length >= before + RECOVERED_AFTER, `progress after '${label}'`, 300_000).then(() => (recoveredAt = Date.now()));
      trace(`${label} at ${before} runs`);
      const { node, note = '' } = await step();
      await recovered;
      events.push({ event: label, node, recoverMs: recoveredAt - begun, note });
      trace(`${label}: recovered in ${recoveredAt - begun} ms ${note}`);
    };

    /** Which of the Raft groups Fennel uses `name` leads (each stream, bucket and consumer is one, with a leader of its own). */
    const ledBy = async (name: string): Promise<string> => {
      const { jsm } = await link.handles();
      const groups: Array<[string, () => Promise<{ cluster?: { leader?: string } }>]> = [
        ['the task stream', () => jsm.streams.info(STREAM)],
        [`the queue's consumer`, () => jsm.consumers.info(STREAM, QUEUE)],
        ['the results bucket', () => jsm.streams.info(`KV_${PREFIX}_results`)],
        ['the state bucket', () => jsm.streams.info(`KV_${PREFIX}_state`)],
      ];
      const led: string[] = [];
      for (const [what, info] of groups) if ((await info().catch(() => undefined))?.cluster?.leader === name) led.push(what);
      return led.length ? `it led ${led.join(', ')}` : 'it led none of the task stream, the queue\'s consumer, the buckets';
    };

    let follower: Node | undefined;
    await event(KILL_FOLLOWER_AT, 'SIGKILL a node that does not lead the task stream', async () => {
      const leader = (await streamInfo()).cluster?.leader;
      follower = nodes.find((n) => n.name !== leader)!;
      const led = await ledBy(follower.name);
      await follower.server.kill('SIGKILL');
      return { node: follower.name, note: `${led}; the task stream's leader stayed ${leader}` };
    });
    await event(RESTART_AT, 'restart that node on its store', async () => {
      await follower!.server.restart();
      const back = Date.now();
      // It must catch up before the next loss, or the cluster would be losing its second copy, not a node.
      await until(
        async () => {
          const info = await streamInfo();
          return (info.cluster?.replicas ?? []).some((r) => r.name === follower!.name && r.current);
        },
        `${follower!.name} to be current in ${STREAM}`,
        120_000,
      );
      return { node: follower!.name, note: `current in the task stream ${((Date.now() - back) / 1000).toFixed(2)} s after it was back` };
    });
    await event(KILL_LEADER_AT, "SIGKILL the task stream's leader", async () => {
      const leader = nodeNamed((await streamInfo()).cluster?.leader);
      const led = await ledBy(leader.name);
      await leader.server.kill('SIGKILL');
      const killed = Date.now();
      const next = await until(async () => Boolean((await streamInfo()).cluster?.leader), 'a new leader of the task stream', 120_000).then(() => streamInfo());
      return { node: leader.name, note: `${led}; ${next.cluster?.leader} leads the task stream ${((Date.now() - killed) / 1000).toFixed(2)} s later` };
    });

    // Every confirmed task runs, on the two nodes left.
    await until(() => feeder.ids.length >= TOTAL, `${TOTAL} tasks confirmed by the cluster`, 300_000);
    await feeder.stop();
    const notRun = (): string[] => {
      const ran = new Set(ledgerIds(ledger));
      return feeder.ids.filter((id) => !ran.has(id));
    };
    await until(() => notRun().length === 0, 'every task to run', 300_000, async () => {
      const missing = notRun();
      return `${missing.length} of ${feeder.ids.length} enqueued never ran (${missing.slice(0, 3).join(', ')}…); queues: ${JSON.stringify(await producer.transport.stats())}`;
    });
    const totalMs = Date.now() - started0;
    // Runs of messages held when a node went (acks that did not land) come back after the ack wait: let them, so the
    // duplicate count is final.
    await until(async () => (await producer.transport.stats()).every((s) => s.ready + s.scheduled + s.unacked === 0), 'the queue to drain', 120_000).catch(() => {});

    // Every result, read back through the result backend (from the two nodes left).
    const wrong: string[] = [];
    const ids = [...feeder.ids];
    for (let i = 0; i < ids.length; i += 100) {
      await Promise.all(
        ids.slice(i, i + 100).map(async (id) => {
          const meta = await retrying(() => producer.backend.get(id), 30_000);
          const n = argument.get(id)!;
          if (meta?.status !== 'SUCCESS' || meta.result !== n * n) wrong.push(`${id} (n=${n}): ${meta ? `${meta.status} ${JSON.stringify(meta.result)}` : 'no result'}`);
        }),
      );
    }

    const runs = ledgerIds(ledger);
    const distinct = new Set(runs);
    const enqueued = new Set(feeder.ids);
    const lost = feeder.ids.filter((id) => !distinct.has(id)).length;
    const report: ClusterReport = {
      version,
      enqueued: feeder.ids.length,
      completed: feeder.ids.length - lost,
      lost,
      correct: feeder.ids.length - wrong.length,
      duplicates: runs.length - distinct.size,
      refused: feeder.refused,
      refusedRan: [...distinct].filter((id) => !enqueued.has(id)).length,
      events,
      totalMs,
    };
    process.stdout.write(`# nats cluster: ${JSON.stringify(report)}\n`);
    const target = process.env['FENNEL_FAULTS_REPORT'];
    if (target) writeFaultsReport(target, 'cluster', clusterMarkdown(report));

    assert.equal(lost, 0, `${lost} task(s) confirmed by the cluster never ran`);
    assert.equal(feeder.ids.length, TOTAL);
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} result(s) missing or wrong`);
  });
});

interface ClusterReport {
  version: string;
  enqueued: number;
  completed: number;
  lost: number;
  correct: number;
  duplicates: number;
  /** Publishes the producer reported as failed (sent again with new ids). */
  refused: number;
  /** Of those, how many ran anyway (the cluster had stored them; the answer was lost). */
  refusedRan: number;
  events: ClusterEvent[];
  totalMs: number;
}

function clusterMarkdown(r: ClusterReport): string {
  return [
    '## NATS JetStream, three nodes (replicas=3)',
    '',
    'Generated by `test/faults/nats-cluster.test.ts` (part of `npm run faults`).',
    '',
    `- Date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${r.version}`,
    '- Three nats-server processes on loopback, each routed to the other two, each with its own JetStream store; every stream and key-value bucket Fennel makes has replicas=3. The producer, two workers (`-P process -c 2`, `FENNEL_VISIBILITY_TIMEOUT_SEC=3`) and the result backend use `nats://n1,n2,n3?replicas=3`.',
    `- ${TOTAL} tasks, each appending its id to a ledger and returning n², topped up to keep 500 waiting. At ${KILL_FOLLOWER_AT} runs a node that does not lead the task stream is SIGKILLed; at ${RESTART_AT} it is restarted on its store; at ${KILL_LEADER_AT} (once it is current again) the task stream's leader is SIGKILLed, and the rest runs on the two nodes left.`,
    '',
    '| Enqueued | Completed | Lost | Results correct | Run more than once | Publishes refused (sent again) | Total time |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${r.enqueued} | ${r.completed} | **${r.lost}** | ${r.correct} | ${r.duplicates} | ${r.refused} (${r.refusedRan} of them ran anyway) | ${(r.totalMs / 1000).toFixed(1)} s |`,
    '',
    `Time to recover: from the event until the ledger had moved on by ${RECOVERED_AFTER} more runs.`,
    '',
    '| Event | Node | Time to recover | |',
    '| --- | --- | ---: | --- |',
    ...r.events.map((e) => `| ${e.event} | ${e.node} | ${(e.recoverMs / 1000).toFixed(2)} s | ${e.note} |`),
    '',
    'Enqueued counts the publishes the cluster confirmed. A publish no server took (the stream without a leader, during',
    'an election) is sent again by the producer for up to `connectTimeoutMs` (5 s); one still refused then is reported',
    'to the producer (its `sent` rejects with BrokerUnavailableError), and the feeder sends the task again with a new',
    'id. A refused one the cluster had stored after all would run under its old id (counted above as "ran anyway").',
    '',
    'This is the figure for surviving the loss of a broker node. Redis (one server, no Sentinel) and RabbitMQ (classic',
    'queues on one node, no quorum queues) do not survive it: their rows above restart the same server on the same',
    'data (append-only file; the node\'s message store), and while it is down nothing is published or delivered.',
  ].join('\n');
}
