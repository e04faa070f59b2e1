// Beat: sends the app's schedules' fires when they fall due (Celery's beat). Any number of beats may run; one
// leads, through a lease in the result backend's engine (Redis SET NX PX by a script, a SQLite row with an
// expiry), renewed every third of its time. A follower tries every half second and just after the lease would
// lapse, so it takes over within the lease time of the leader's death (half a second after a stop); a leader that
// cannot renew stops firing when its own time is up, before anyone else can take the lease.
//
// Each due time fires once. A fire's ids are derived from the schedule's name and the due time (schedule.ts), and
// it is sent with `deduplicate: { ttlSec }` where the broker has deduplication (sqlite, redis, memory): the broker
// refuses the second send of one due time, whether it comes from two leaders for a moment or from a new leader
// re-sending what the last one sent and died before recording. Elsewhere (amqp) the due time is claimed in the
// backend first (claimOnce), so it fires at most once. The last due time fired per schedule is recorded in the
// engine (putRecord), so a new leader, or a restarted beat, knows what was done; plan.ts decides what it fires.

import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Fennel } from '../app/fennel.ts';
import { firstTaskId, freeze, sendFrozen } from '../app/canvas.ts';
import type { ResultBackend } from '../backends/backend.ts';
import { ConfigError } from '../errors.ts';
import { workerLog, type LogFormat } from '../worker/log.ts';
import { ON_TIME_MS, planStart, planTick } from './plan.ts';
import { fireId, type Schedule } from './schedule.ts';

/** The lease the beats of an app's beat group compete for, and the records table of its last fire per schedule. */
export function beatKeys(app: Fennel): { lease: string; state: string } {
  return { lease: `beat.${app.config.beatGroup}`, state: `beat.${app.config.beatGroup}` };
}
export const DEFAULT_LEASE_MS = 10_000;

/** What the state table holds per schedule. */
export interface ScheduleState {
  lastDueMs: number;
  lastSentAtMs: number;
  lastTaskId: string;
  /** The beat that sent it. */
  beat: string;
}

/** One fire, once it is in the broker. */
export interface Fire {
  schedule: string;
  dueMs: number;
  sentAtMs: number;
  taskId: string;
  /** A missed due time fired by catchUp. */
  caughtUp: boolean;
}

export interface BeatOptions {
  /** This beat's name in the lease, the logs and `fennel schedules`. Default `beat.<pid>@<hostname>`. */
  name?: string;
  /** How long a lease lasts unrenewed: the longest a follower waits to take over from a dead leader. Default 10 s. */
  leaseMs?: number;
  logger?: Logger;
  logLevel?: string;
  logFormat?: LogFormat;
  /** Called after each fire is in the broker (benchmarks, tests). */
  onFire?: (fire: Fire) => void;
}

/** Reads the recorded state of a schedule; a record that does not parse counts as none. */
export function parseState(json: string | undefined): ScheduleState | undefined {
  if (json === undefined) return undefined;
  try {
    const state = JSON.parse(json) as ScheduleState;
    return typeof state.lastDueMs === 'number' ? state : undefined;
  } catch {
    return undefined;
  }
}

/** The backend's lease and record methods, or a ConfigError saying which backends have them. */
export function beatBackend(app: Fennel): Required<Pick<ResultBackend, 'acquireLease' | 'releaseLease' | 'readLease' | 'putRecord' | 'readRecords' | 'claimOnce'>> {
  const b = app.backend;
  if (!b.acquireLease || !b.releaseLease || !b.readLease || !b.putRecord || !b.readRecords || !b.claimOnce) {
    throw new ConfigError(`beat keeps its lease and state in the result backend, and ${b.url} cannot hold them: give the app a sqlite:// or redis:// backend (with an amqp:// broker: backend: 'redis://…' or 'sqlite://…')`);
  }
  return {
    acquireLease: b.acquireLease.bind(b),
    releaseLease: b.releaseLease.bind(b),
    readLease: b.readLease.bind(b),
    putRecord: b.putRecord.bind(b),
    readRecords: b.readRecords.bind(b),
    claimOnce: b.claimOnce.bind(b),
  };
}

/** A fire's deduplication window: long enough that no leader can send its due time again after it lapses. */
function dedupeTtlSec(schedule: Schedule): number {
  // With catchUp 'none' only an on-time due time (a second old) is ever sent again; 'last' and 'all' send missed
  // ones, as old as the time no beat led: a day covers all but the rarest case (docs/beat.md).
  const floorSec = schedule.catchUp === 'none' ? 60 : 86_400;
  return Math.ceil(Math.max(floorSec, (2 * schedule.timetable.periodMs) / 1000));
}

/** A follower asks for the lease at least this often (half the on-time window: a handover misses nothing). */
const FOLLOW_POLL_MS = ON_TIME_MS / 2;

/** Never arm a timer further ahead than this (setTimeout's limit is 24.8 days; a shorter step costs nothing). */
const MAX_TIMER_MS = 60_000;

export class Beat {
  readonly name: string;
  readonly log: Logger;
  private readonly leaseMs: number;
  private readonly backend: ReturnType<typeof beatBackend>;
  private readonly keys: { lease: string; state: string };
  private leading = false;
  /** While leading: fires stop at this time (ms) unless the lease is renewed first. */
  private leadUntil = 0;
  /** While leading: the last due time handled per schedule. */
  private readonly last = new Map<string, number>();
  /** Per schedule, the fires being sent, in due order. */
  private readonly sending = new Map<string, Promise<void>>();
  private leaseTimer: NodeJS.Timeout | undefined;
  private fireTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The lease step on its way, if any. */
  private stepping: Promise<void> | undefined;
  private leaseFailing = false;
  private followed: string | undefined;

  constructor(
    readonly app: Fennel,
    private readonly options: BeatOptions = {},
  ) {
    this.name = options.name ?? `beat.${process.pid}@${hostname()}`;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    if (!(this.leaseMs >= 100)) throw new ConfigError(`beat: leaseMs must be at least 100 (got ${options.leaseMs})`);
    this.log = options.logger ?? workerLog({ name: this.name, level: options.logLevel ?? 'info', format: options.logFormat ?? 'json' }).log;
    this.backend = beatBackend(app);
    this.keys = beatKeys(app);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts competing for the lease; resolves after the first attempt (leading, following or failing). */
  async start(): Promise<void> {
    const schedules = [...this.app.schedules.values()];
    if (schedules.length === 0) this.log.warn('beat: the app registers no schedules (app.schedule): nothing to fire');
    this.log.child({}, { level: 'info' }).info(
      { beat: this.name, schedules: schedules.map((s) => ({ name: s.name, when: s.timetable.description, task: s.taskName, catchUp: s.catchUp })), leaseMs: this.leaseMs },
      `beat ready: ${this.name}, group ${this.app.config.beatGroup}, ${schedules.length} schedule(s), lease ${this.leaseMs / 1000} s`,
    );
    await (this.stepping = this.leaseStep());
  }

  /** Stops firing, waits for the fires being sent, and gives the lease up so that a follower takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.leaseTimer);
    clearTimeout(this.fireTimer);
    const wasLeading = this.leading;
    this.leading = false;
    // A lease step on its way gives back what it takes (leaseStep); wait for it, then for the fires being sent.
    await this.stepping;
    await Promise.all(this.sending.values());
    if (wasLeading) await this.backend.releaseLease(this.keys.lease, this.name).catch((error: unknown) => this.log.warn({ err: error }, 'beat: could not give the lease up; it lapses on its own'));
  }

  private get renewMs(): number {
    return this.leaseMs / 3;
  }

  /** Takes or renews the lease, then comes back when it is time to renew (leader) or to try again (follower). */
  private async leaseStep(): Promise<void> {
    if (this.stopped) return;
    const askedAt = Date.now();
    let delayMs = this.renewMs;
    try {
      const lease = await this.backend.acquireLease(this.keys.lease, this.name, this.leaseMs);
      if (this.stopped) {
        // Stopped while this attempt was on its way: a lease it took is given back, not left to lapse.
        if (lease.holder === this.name) await this.backend.releaseLease(this.keys.lease, this.name).catch(() => {});
        return;
      }
      if (this.leaseFailing) this.log.info('beat: the result backend answers again');
      this.leaseFailing = false;
      if (lease.holder === this.name) {
        // The store's expiry counts from when it ran, after askedAt: stopping at askedAt + leaseMs is on the safe side.
        this.leadUntil = askedAt + this.leaseMs;
        if (!this.leading) await this.lead();
      } else {
        if (this.leading) this.stepDown(`the lease is held by ${lease.holder}`);
        if (this.followed !== lease.holder) this.log.info({ leader: lease.holder }, `beat: following ${lease.holder} (it leads until its lease lapses)`);
        this.followed = lease.holder;
        // Try again just after the lease would lapse (a dead leader), and at least every half second, so that a
        // leader that gave the lease up (a stop) is followed within the on-time window: nothing then is missed.
        delayMs = Math.min(this.leaseMs, FOLLOW_POLL_MS, Math.max(20, lease.expiresAt.getTime() - Date.now() + 20));
      }
    } catch (error) {
      if (!this.leaseFailing) this.log.warn({ err: error }, `beat: the lease could not be taken or renewed (${(error as Error).message}); retrying`);
      this.leaseFailing = true;
      if (this.leading && Date.now() >= this.leadUntil) this.stepDown('its lease lapsed before it could be renewed');
      delayMs = Math.min(this.renewMs, 1000);
    }
    if (this.stopped) return;
    this.leaseTimer = setTimeout(() => void (this.stepping = this.leaseStep()), delayMs);
  }

  /** Becomes the leader: reads what was fired, fires what the catch-up plan says, then arms the timer. */
  private async lead(): Promise<void> {
    this.leading = true;
    this.followed = undefined;
    let records: Map<string, string>;
    try {
      records = await this.backend.readRecords(this.keys.state);
    } catch (error) {
      this.stepDown(`its state could not be read (${(error as Error).message})`);
      return;
    }
    if (!this.leading) return;
    this.log.info({ beat: this.name }, `beat: ${this.name} leads`);
    const now = Date.now();
    for (const schedule of this.app.schedules.values()) {
      const state = parseState(records.get(schedule.name));
      const plan = planStart(schedule.timetable, state?.lastDueMs, now, schedule.catchUp);
      if (plan.skipped > 0) {
        this.log.warn(
          { schedule: schedule.name, skipped: plan.skipped, catchUp: schedule.catchUp, lastDue: state ? new Date(state.lastDueMs).toISOString() : null },
          `beat: ${schedule.name}: ${plan.skipped} due time(s) passed while no beat led; skipped (catchUp: '${schedule.catchUp}')`,
        );
      }
      if (plan.caughtUp > 0) this.log.info({ schedule: schedule.name, caughtUp: plan.caughtUp }, `beat: ${schedule.name}: firing ${plan.caughtUp} missed due time(s) now (catchUp: '${schedule.catchUp}')`);
      // A recorded due time ahead of this clock (another machine's clock runs ahead) is not fired again.
      this.last.set(schedule.name, Math.max(now, state?.lastDueMs ?? -Infinity));
      plan.fire.forEach((due, i) => this.fire(schedule, due, i < plan.caughtUp));
    }
    this.arm();
  }

  private stepDown(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    clearTimeout(this.fireTimer);
    this.log.warn(`beat: ${this.name} no longer leads: ${why}`);
  }

  /** Arms the timer for the earliest next due time of any schedule. */
  private arm(): void {
    clearTimeout(this.fireTimer);
    if (!this.leading || this.stopped) return;
    let earliest = Infinity;
    for (const schedule of this.app.schedules.values()) {
      const next = schedule.timetable.next(this.last.get(schedule.name) ?? Date.now());
      if (next !== undefined && next < earliest) earliest = next;
    }
    if (earliest === Infinity) return;
    this.fireTimer = setTimeout(() => this.onTimer(), Math.min(MAX_TIMER_MS, Math.max(0, earliest - Date.now())));
  }

  private onTimer(): void {
    if (!this.leading || this.stopped) return;
    const now = Date.now();
    if (now >= this.leadUntil) {
      // The lease step that would renew it has not answered in time: someone else may lead from now on.
      this.stepDown('its lease lapsed before it could be renewed');
      return;
    }
    for (const schedule of this.app.schedules.values()) {
      const plan = planTick(schedule.timetable, this.last.get(schedule.name) ?? now, now);
      this.last.set(schedule.name, now);
      if (plan.skipped > 0) this.log.warn({ schedule: schedule.name, skipped: plan.skipped }, `beat: ${schedule.name}: ${plan.skipped} due time(s) fell due while this beat could not run; skipped`);
      for (const due of plan.fire) this.fire(schedule, due, false);
    }
    this.arm();
  }

  /** Queues one fire behind the schedule's earlier ones (a schedule's fires are sent in due order). */
  private fire(schedule: Schedule, dueMs: number, caughtUp: boolean): void {
    const previous = this.sending.get(schedule.name) ?? Promise.resolve();
    const next = previous.then(() => this.send(schedule, dueMs, caughtUp));
    this.sending.set(schedule.name, next);
    void next.finally(() => {
      if (this.sending.get(schedule.name) === next) this.sending.delete(schedule.name);
    });
  }

  /** Sends one fire, retrying while this beat leads and the fire has not expired; then records it. */
  private async send(schedule: Schedule, dueMs: number, caughtUp: boolean): Promise<void> {
    const dict = schedule.toDict();
    let part = 0;
    const group = this.app.config.beatGroup;
    freeze(dict, () => fireId(schedule.name, dueMs, part++, group));
    const taskId = firstTaskId(dict)!;
    const broadcast = this.app.registry.get(schedule.taskName)?.options.broadcast === true;
    const dedupe = this.app.transport.capabilities.deduplication && !broadcast;
    // Claimed once: a retry after a failed send must not find its own claim and give up.
    let claimed = dedupe;
    for (let attempt = 0; ; attempt++) {
      try {
        if (!claimed) {
          if (!(await this.backend.claimOnce(`beat:${group}:${schedule.name}:${dueMs}`))) {
            this.log.debug({ schedule: schedule.name, due: new Date(dueMs).toISOString() }, `beat: ${schedule.name}: the fire due ${new Date(dueMs).toISOString()} was sent already`);
            return;
          }
          claimed = true;
        }
        await sendFrozen(this.app, dict, { expires: schedule.expiresSec, ...(dedupe ? { deduplicate: { ttlSec: dedupeTtlSec(schedule) } } : {}) });
        break;
      } catch (error) {
        const expired = Date.now() >= dueMs + schedule.expiresSec * 1000;
        if (!this.leading || this.stopped || expired) {
          this.log.error({ err: error, schedule: schedule.name, id: taskId }, `beat: ${schedule.name}: the fire due ${new Date(dueMs).toISOString()} could not be sent (${(error as Error).message}); given up: ${expired ? 'it has expired' : 'this beat no longer leads'}`);
          return;
        }
        if (attempt === 0) this.log.warn({ err: error, schedule: schedule.name, id: taskId }, `beat: ${schedule.name}: sending failed (${(error as Error).message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
    const sentAtMs = Date.now();
    this.log.info(
      { schedule: schedule.name, task: schedule.taskName, id: taskId, due: new Date(dueMs).toISOString(), lateMs: sentAtMs - dueMs, caughtUp },
      `Scheduler: Sending due task ${schedule.name} (${schedule.taskName})`,
    );
    const state: ScheduleState = { lastDueMs: dueMs, lastSentAtMs: sentAtMs, lastTaskId: taskId, beat: this.name };
    await this.backend.putRecord(this.keys.state, schedule.name, JSON.stringify(state)).catch((error: unknown) => this.log.warn({ err: error, schedule: schedule.name }, `beat: ${schedule.name}: its last fire could not be recorded (${(error as Error).message})`));
    this.options.onFire?.({ schedule: schedule.name, dueMs, sentAtMs, taskId, caughtUp });
  }
}
