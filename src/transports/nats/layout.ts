// The names the nats:// transport uses on the server, from the URL's `prefix` (p below; P is it upper-cased).
// Queue names and task ids hold '.', '*', '>' and other characters a subject token or a consumer name cannot:
// each goes through subjectToken() (clients/nats/core.ts), an injective encoding into [A-Za-z0-9_-] that the
// event bus and channels use too ('.' → '_2e', '_' → '__'), and tokenText() reads it back.
//
//   stream P_TASKS      WorkQueue retention, file storage, the URL's replicas, duplicate window 2 min
//     p.q.<queue>.m            a ready message
//     p.q.<queue>.d.<task id>  a ready message published with `deduplicate` (at most one per subject: see nats.ts)
//     p.s.<queue>.m / p.s.<queue>.d.<task id>   the same, waiting for its countdown or eta (header Fennel-Due, ms)
//   consumer <queue>     durable pull consumer per queue, filter p.q.<queue>.>, shared by every worker of it
//   consumer _scheduler  durable pull consumer, filter p.s.>: moves due messages onto their queue (scheduler.ts)
//   stream P_DEAD        limits retention: dead letters, subject p.dead, one JSON record each
//   bucket p_dedupe      key-value: task id → expiry (ms) of a `deduplicate: { ttlMs }` publish
//   bucket p_consumers   key-value: <queue>.<consumer> → expiry (ms) of a worker's announcement (presence)
//   subject p.w.<queue>  core NATS, no payload: "there may be work in <queue>", for idle consumers
//
// One stream for every queue, not one per queue: in a cluster each stream is a Raft group, and a worker's direct
// queue and every actor are queues of their own. WorkQueue retention lets consumers' filters not overlap, which one
// consumer per queue (`p.q.<queue>.>`) and the scheduler (`p.s.>`) keep. `_scheduler` can never be a queue's
// consumer name: subjectToken never writes '_' followed by 's'.

import { subjectToken } from '../../clients/nats/core.ts';
import { tokenText } from '../../clients/nats/jetstream.ts';
import { ConfigError } from '../../errors.ts';

/** Consumer (and file) names stay well inside the server's 255 bytes. */
const MAX_NAME = 200;
export const SCHEDULER = '_scheduler';
/** The header of a scheduled message: when it is due (ms since the epoch). */
export const DUE_HEADER = 'Fennel-Due';

export class NatsLayout {
  readonly tasks: string;
  readonly dead: string;
  readonly deadSubject: string;
  readonly dedupeBucket: string;
  readonly consumersBucket: string;

  constructor(readonly prefix: string) {
    const upper = prefix.toUpperCase();
    this.tasks = `${upper}_TASKS`;
    this.dead = `${upper}_DEAD`;
    this.deadSubject = `${prefix}.dead`;
    this.dedupeBucket = `${prefix}_dedupe`;
    this.consumersBucket = `${prefix}_consumers`;
  }

  /** The queue's token, checked: a ConfigError for a name whose encoding is too long for a consumer name. */
  token(queue: string): string {
    const token = subjectToken(queue);
    if (token.length > MAX_NAME) throw new ConfigError(`queue name '${queue.slice(0, 60)}…' is too long for NATS: encoded it is ${token.length} characters, and a consumer name may have ${MAX_NAME}`);
    return token;
  }

  /** The queue a consumer name or subject token stands for, or undefined (the scheduler, something not Fennel's). */
  queueOf(token: string): string | undefined {
    return token === SCHEDULER ? undefined : tokenText(token);
  }

  /** The durable consumer of a queue. */
  consumer(queue: string): string {
    return this.token(queue);
  }

  /** Where a message goes: ready (`q`) or scheduled (`s`), plain or deduplicated by task id. */
  subject(stage: 'q' | 's', queue: string, dedupeId?: string): string {
    return `${this.prefix}.${stage}.${this.token(queue)}.${dedupeId === undefined ? 'm' : `d.${subjectToken(dedupeId)}`}`;
  }

  /** Every subject of a queue at one stage (a consumer's filter, a purge's). */
  queueFilter(stage: 'q' | 's', queue: string): string {
    return `${this.prefix}.${stage}.${this.token(queue)}.>`;
  }

  stageFilter(stage: 'q' | 's'): string {
    return `${this.prefix}.${stage}.>`;
  }

  /** `p.q.<queue>.…` or `p.s.<queue>.…` → stage and queue token; undefined for any other subject. */
  parse(subject: string): { stage: 'q' | 's'; token: string } | undefined {
    const parts = subject.split('.');
    if (parts.length < 4 || parts[0] !== this.prefix || (parts[1] !== 'q' && parts[1] !== 's')) return undefined;
    return { stage: parts[1], token: parts[2]! };
  }

  /** The ready subject a scheduled one moves to. */
  readySubject(scheduled: string): string {
    return `${this.prefix}.q.${scheduled.slice(this.prefix.length + 3)}`;
  }

  wake(queue: string): string {
    return `${this.prefix}.w.${this.token(queue)}`;
  }

  /** The key of a presence announcement. */
  presenceKey(queue: string, consumer: string): string {
    return `${this.token(queue)}.${subjectToken(consumer)}`;
  }
}
