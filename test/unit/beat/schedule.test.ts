// Schedules: parsing `every`, the due times of intervals and crons (croner, with time zones and daylight saving
// pinned), fire ids, dueBetween against walking next(), and app.schedule's checks.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { dueBetween, fireId, parseEvery, timetable, type ScheduleSpec, type Timetable } from '../../../src/beat/schedule.ts';
import { chain, ConfigError, Fennel, group } from '../../../src/index.ts';
import { seededRandom } from '../../support/random.ts';

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());
const at = (text: string): number => Date.parse(text);

/** The first `n` due times after `from`, by walking next(). */
function walk(t: Timetable, from: string | number, n: number): string[] {
  const out: string[] = [];
  let after = typeof from === 'string' ? at(from) : from;
  for (let i = 0; i < n; i++) {
    const due = t.next(after);
    assert.ok(due !== undefined, `a due time after ${iso(after)}`);
    assert.ok(due > after, `next(${iso(after)}) = ${iso(due)} is strictly after it`);
    out.push(iso(due)!);
    after = due;
  }
  return out;
}

/** Every due time in (after, until], by walking next(): the reference dueBetween must agree with. */
function walkBetween(t: Timetable, after: number, until: number): number[] {
  const out: number[] = [];
  for (let due = t.next(after); due !== undefined && due <= until; due = t.next(due)) out.push(due);
  return out;
}

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && pattern.test(e.message), `a ConfigError matching ${String(pattern)}`);
}


describe('parseEvery', () => {
  it('reads seconds as a number, or a number with s, m, h or d', () => {
    assert.equal(parseEvery(5), 5);
    assert.equal(parseEvery(0.1), 0.1);
    assert.equal(parseEvery('5s'), 5);
    assert.equal(parseEvery('10m'), 600);
    assert.equal(parseEvery('1h'), 3600);
    assert.equal(parseEvery('1d'), 86_400);
    assert.equal(parseEvery('1.5h'), 5400);
    assert.equal(parseEvery(' 30 s '), 30);
  });

  it('refuses zero, negatives, non-numbers and unknown units', () => {
    for (const bad of [0, -1, -0.5, Number.NaN, Number.POSITIVE_INFINITY, 'abc', '5x', '5', '', '0s', '-1s', 's', '1.h', '5 ms']) {
      assert.equal(parseEvery(bad), undefined, `parseEvery(${JSON.stringify(bad)}) refuses ${String(bad)}`);
    }
  });
});

describe('timetable', () => {
  it('every: due times are multiples of the period since the epoch, whatever the starting point', () => {
    const five = timetable('five', { every: 5 });
    assert.equal(five.interval, true);
    assert.equal(five.periodMs, 5000);
    assert.equal(five.description, 'every 5s');
    assert.deepEqual(walk(five, '2026-05-01T10:00:03.250Z', 3), ['2026-05-01T10:00:05.000Z', '2026-05-01T10:00:10.000Z', '2026-05-01T10:00:15.000Z']);
    // A due time itself: the next one is a period later (strictly after).
    assert.equal(iso(five.next(at('2026-05-01T10:00:05.000Z'))), '2026-05-01T10:00:10.000Z');
    assert.equal(iso(five.next(at('2026-05-01T10:00:04.999Z'))), '2026-05-01T10:00:05.000Z');
    const tenMinutes = timetable('ten', { every: '10m' });
    assert.equal(tenMinutes.periodMs, 600_000);
    assert.equal(tenMinutes.description, 'every 10m');
    assert.deepEqual(walk(tenMinutes, '2026-05-01T10:07:00Z', 2), ['2026-05-01T10:10:00.000Z', '2026-05-01T10:20:00.000Z']);
    const tenth = timetable('tenth', { every: 0.1 });
    assert.equal(tenth.periodMs, 100);
    assert.deepEqual(walk(tenth, '2026-05-01T10:00:00.050Z', 2), ['2026-05-01T10:00:00.100Z', '2026-05-01T10:00:00.200Z']);
    // Two beats started at different moments compute the same due times.
    assert.deepEqual(walk(five, '2026-05-01T10:00:06Z', 2), walk(five, '2026-05-01T10:00:09.999Z', 2));
  });

  it('cron: five fields (minutes) or six (seconds first), in UTC unless a tz is given', () => {
    const seconds = timetable('secs', { cron: '*/5 * * * * *' });
    assert.equal(seconds.interval, false);
    assert.equal(seconds.periodMs, 5000);
    assert.deepEqual(walk(seconds, '2026-01-01T00:00:00.000Z', 3), ['2026-01-01T00:00:05.000Z', '2026-01-01T00:00:10.000Z', '2026-01-01T00:00:15.000Z']);
    assert.deepEqual(walk(seconds, '2026-01-01T00:00:03.500Z', 1), ['2026-01-01T00:00:05.000Z']);
    const hourly = timetable('hourly', { cron: '0 * * * *' });
    assert.equal(hourly.periodMs, 3_600_000);
    assert.equal(hourly.description, 'cron 0 * * * * (UTC)');
    assert.deepEqual(walk(hourly, '2026-01-01T00:00:00.000Z', 3), ['2026-01-01T01:00:00.000Z', '2026-01-01T02:00:00.000Z', '2026-01-01T03:00:00.000Z']);
    assert.deepEqual(walk(hourly, '2026-01-01T00:59:59.999Z', 1), ['2026-01-01T01:00:00.000Z']);
    const paris = timetable('paris', { cron: '0 9 * * *', tz: 'Europe/Paris' });
    assert.equal(paris.description, 'cron 0 9 * * * (Europe/Paris)');
    assert.deepEqual(walk(paris, '2026-01-15T00:00:00Z', 1), ['2026-01-15T08:00:00.000Z'], '09:00 in Paris in winter (UTC+1)');
    assert.deepEqual(walk(paris, '2026-07-15T00:00:00Z', 1), ['2026-07-15T07:00:00.000Z'], '09:00 in Paris in summer (UTC+2)');
  });

  it('a problem is a ConfigError naming the schedule: invalid cron, unknown tz, zero or negative interval, cron and every, unknown field', () => {
    refused(() => timetable('reports.hourly', { cron: 'not a cron' }), /schedule 'reports\.hourly': invalid cron expression "not a cron"/);
    refused(() => timetable('bad.field', { cron: '61 * * * *' }), /schedule 'bad\.field': invalid cron expression/);
    refused(() => timetable('three', { cron: '* * *' }), /schedule 'three': invalid cron expression/);
    refused(() => timetable('never', { cron: '0 0 30 2 *' }), /schedule 'never': the cron expression "0 0 30 2 \*" is never due/);
    refused(() => timetable('mars', { cron: '0 * * * *', tz: 'Mars/Olympus_Mons' }), /schedule 'mars': unknown time zone "Mars\/Olympus_Mons"/);
    refused(() => timetable('zero', { every: 0 }), /schedule 'zero': every must be a positive number/);
    refused(() => timetable('negative', { every: -5 }), /schedule 'negative': every must be a positive number/);
    refused(() => timetable('negative.text', { every: '-5s' }), /schedule 'negative\.text': every must be/);
    refused(() => timetable('unit', { every: '5x' }), /schedule 'unit': every must be/);
    refused(() => timetable('tiny', { every: 0.0001 }), /schedule 'tiny': every must be at least 1 ms/);
    refused(() => timetable('both', { cron: '* * * * *', every: 5 } as unknown as ScheduleSpec), /schedule 'both': give cron or every, not both/);
    refused(() => timetable('extra', { cron: '* * * * *', timezone: 'UTC' } as unknown as ScheduleSpec), /schedule 'extra': unknown field 'timezone'/);
    refused(() => timetable('neither', {} as unknown as ScheduleSpec), /schedule 'neither': give \{ cron/);
    refused(() => timetable('nothing', null as unknown as ScheduleSpec), /schedule 'nothing'/);
    refused(() => timetable('number', { cron: 5 } as unknown as ScheduleSpec), /schedule 'number'/);
  });

  it('an interval schedule with a field it does not have (tz, a typo) is a ConfigError too', () => {
    refused(() => timetable('every.tz', { every: 5, tz: 'Europe/Paris' } as unknown as ScheduleSpec), /schedule 'every\.tz': unknown field 'tz'/);
    refused(() => timetable('every.typo', { every: 5, catchup: 'all' } as unknown as ScheduleSpec), /schedule 'every\.typo': unknown field 'catchup'/);
  });

  // croner's rules (its fixedTimeRule), pinned: see the comment at the top of src/beat/schedule.ts.
  describe('daylight saving (croner)', () => {
    it('Europe/Paris spring forward, 2026-03-29 02:00 → 03:00: a fixed time in the gap runs at the first valid time; an interval-like cron skips the gap', () => {
      const fixed = timetable('paris.fixed', { cron: '30 2 * * *', tz: 'Europe/Paris' });
      assert.deepEqual(walk(fixed, '2026-03-28T12:00:00Z', 3), ['2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z', '2026-03-31T00:30:00.000Z'], '03:00 local on the day of the gap, then 02:30 CEST');
      const halfHourly = timetable('paris.interval', { cron: '*/30 * * * *', tz: 'Europe/Paris' });
      // 00:30Z = 01:30 CET, 01:00Z = 03:00 CEST: 02:00 and 02:30 local do not exist that night.
      assert.deepEqual(walk(halfHourly, '2026-03-29T00:00:00Z', 4), ['2026-03-29T00:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T01:30:00.000Z', '2026-03-29T02:00:00.000Z']);
    });

    it('Europe/Paris fall back, 2026-10-25 03:00 → 02:00: a fixed time in the repeated hour runs once; an interval-like cron runs on both occurrences', () => {
      const fixed = timetable('paris.fixed', { cron: '30 2 * * *', tz: 'Europe/Paris' });
      assert.deepEqual(walk(fixed, '2026-10-24T12:00:00Z', 3), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z', '2026-10-27T01:30:00.000Z'], 'once at 02:30 CEST, not again at 02:30 CET');
      const halfHourly = timetable('paris.interval', { cron: '*/30 * * * *', tz: 'Europe/Paris' });
      // 00:00Z 02:00 CEST, 00:30Z 02:30 CEST, 01:00Z 02:00 CET, 01:30Z 02:30 CET, 02:00Z 03:00 CET.
      assert.deepEqual(walk(halfHourly, '2026-10-24T23:45:00Z', 5), ['2026-10-25T00:00:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T01:30:00.000Z', '2026-10-25T02:00:00.000Z']);
    });

    it('America/New_York: 02:30 on the spring-forward day (2026-03-08) runs at 03:00 EDT; 01:30 on the fall-back day (2026-11-01) runs once', () => {
      const spring = timetable('ny.spring', { cron: '30 2 * * *', tz: 'America/New_York' });
      assert.deepEqual(walk(spring, '2026-03-07T12:00:00Z', 3), ['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z', '2026-03-10T06:30:00.000Z']);
      const fall = timetable('ny.fall', { cron: '30 1 * * *', tz: 'America/New_York' });
      assert.deepEqual(walk(fall, '2026-10-31T12:00:00Z', 2), ['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z'], 'once at 01:30 EDT, not again at 01:30 EST');
    });
  });
});

describe('fireId', () => {
  const UUID_V5_LAYOUT = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('is a pure function of the schedule name, the due time and the part', () => {
    const due = at('2026-05-01T10:00:00Z');
    assert.equal(fireId('reports.hourly', due), fireId('reports.hourly', due));
    assert.equal(fireId('reports.hourly', due), fireId('reports.hourly', due, 0), 'part 0 by default');
    const ids = [fireId('reports.hourly', due), fireId('reports.daily', due), fireId('reports.hourly', due + 1), fireId('reports.hourly', due, 1), fireId('reports.hourly', due, 2)];
    assert.equal(new Set(ids).size, ids.length, `all differ: ${ids.join(', ')}`);
  });

  it('has the layout of a version 5 UUID (version nibble 5, variant 8 to b)', () => {
    const random = seededRandom(5);
    for (let i = 0; i < 500; i++) {
      const id = fireId(`schedule-${Math.floor(random() * 1e6)}`, Math.floor(random() * 2e12), Math.floor(random() * 4));
      assert.match(id, UUID_V5_LAYOUT);
    }
  });
});

describe('dueBetween', () => {
  it('for an interval, equals walking next(): the count of due times in (after, until] and the latest `keep` of them', () => {
    const cases: Array<[period: number | string, after: number, until: number, keep: number]> = [
      [5, 0, 0, 3],
      [5, 0, 4_999, 3],
      [5, 0, 5_000, 3],
      [5, 5_000, 5_000, 3],
      [5, 5_000, 10_000, 3],
      [5, 4_999, 10_001, 3],
      [5, 10_000, 5_000, 3],
      [5, 1, 60_000, 1],
      [5, 1, 60_000, 0],
      [5, 1, 60_000, 100],
      [0.1, 1_780_000_000_050, 1_780_000_001_000, 4],
      ['1h', at('2026-05-01T00:30:00Z'), at('2026-05-02T00:30:00Z'), 2],
      ['1.5h', at('2026-05-01T00:00:00Z'), at('2026-05-01T09:00:00Z'), 10],
    ];
    const random = seededRandom(15);
    for (let i = 0; i < 300; i++) {
      const periodMs = [1, 7, 100, 1000, 5000, 60_000][Math.floor(random() * 6)]!;
      const after = 1_780_000_000_000 + Math.floor(random() * 10 * periodMs);
      // Both bounds sometimes exactly on a due time.
      const until = random() < 0.25 ? (Math.floor(after / periodMs) + Math.floor(random() * 40)) * periodMs : after + Math.floor(random() * 40 * periodMs);
      cases.push([periodMs / 1000, random() < 0.25 ? Math.floor(after / periodMs) * periodMs : after, until, Math.floor(random() * 6)]);
    }
    for (const [every, after, until, keep] of cases) {
      const t = timetable('i', { every });
      const walked = walkBetween(t, after, until);
      const got = dueBetween(t, after, until, keep);
      const what = `every ${every}, (${after}, ${until}], keep ${keep}`;
      assert.equal(got.count, walked.length, `count: ${what}`);
      assert.deepEqual(got.latest, keep === 0 ? [] : walked.slice(-keep), `latest: ${what}`);
    }
  });

  it('for a cron, walks it: count and the latest `keep`', () => {
    const hourly = timetable('h', { cron: '0 * * * *' });
    const day = dueBetween(hourly, at('2026-05-01T00:00:00Z'), at('2026-05-02T00:00:00Z'), 3);
    assert.equal(day.count, 24);
    assert.deepEqual(day.latest.map(iso), ['2026-05-01T22:00:00.000Z', '2026-05-01T23:00:00.000Z', '2026-05-02T00:00:00.000Z']);
    assert.deepEqual(dueBetween(hourly, at('2026-05-01T00:00:00Z'), at('2026-05-01T00:59:59Z'), 3), { count: 0, latest: [] });
    assert.deepEqual(dueBetween(hourly, at('2026-05-01T05:00:00Z'), at('2026-05-01T01:00:00Z'), 3), { count: 0, latest: [] }, 'an empty range');
    const seconds = timetable('s', { cron: '*/5 * * * * *' });
    const from = at('2026-05-01T00:00:00.500Z');
    const minute = dueBetween(seconds, from, from + 60_000, 100);
    assert.deepEqual(minute.latest, walkBetween(seconds, from, from + 60_000));
    assert.equal(minute.count, 12);
    // The Paris day of the fall-back (midnight CEST to midnight CET) is 25 hours: the repeated hour counts twice.
    const halfHourly = timetable('p', { cron: '*/30 * * * *', tz: 'Europe/Paris' });
    assert.equal(dueBetween(halfHourly, at('2026-10-24T22:00:00Z'), at('2026-10-25T23:00:00Z'), 1).count, 50);
    assert.equal(dueBetween(halfHourly, at('2026-03-28T23:00:00Z'), at('2026-03-29T22:00:00Z'), 1).count, 46, 'and the spring-forward day is 23 hours');
  });
});

describe('app.schedule', () => {
  const newApp = (): Fennel => new Fennel({ broker: `memory://schedule-${randomUUID()}` });

  it('accepts a task with its arguments, a task by name, and a chain; app.schedules lists them with what they send', () => {
    const app = newApp();
    const add = app.task('s.add', (a: number, b: number) => a + b);
    const mul = app.task('s.mul', (a: number, b: number) => a * b);
    assert.equal(app.schedules.size, 0);
    const returned = app
      .schedule('sum', { every: 5 }, add, [1, 2], { queue: 'maths', priority: 3, kwargs: { note: 'x' }, expires: 30, catchUp: 'all' })
      .schedule('python', { cron: '0 * * * *', tz: 'Europe/Paris' }, 'proj.tasks.report', ['daily', { full: true }])
      .schedule('pipeline', { every: '1m' }, chain(add.s(1, 2), mul.s(10)))
      .schedule('fan-out', { every: '1h' }, group([add.s(1, 1), mul.s(2, 2)]));
    assert.equal(returned, app, 'chainable');
    assert.deepEqual([...app.schedules.keys()], ['sum', 'python', 'pipeline', 'fan-out']);
    const sum = app.schedules.get('sum')!;
    assert.equal(sum.name, 'sum');
    assert.equal(sum.taskName, 's.add');
    assert.equal(sum.catchUp, 'all');
    assert.equal(sum.expiresSec, 30);
    assert.deepEqual(sum.spec, { every: 5 });
    assert.deepEqual(sum.toDict(), { task: 's.add', args: [1, 2], kwargs: { note: 'x' }, options: { queue: 'maths', priority: 3 }, subtask_type: null, immutable: true });
    const python = app.schedules.get('python')!;
    assert.equal(python.taskName, 'proj.tasks.report');
    assert.equal(python.catchUp, 'none', 'the default');
    assert.deepEqual(python.toDict().args, ['daily', { full: true }]);
    const pipeline = app.schedules.get('pipeline')!;
    assert.equal(pipeline.taskName, 's.add', 'a workflow is named by its first task');
    assert.equal(pipeline.toDict().subtask_type, 'chain');
    assert.equal(app.schedules.get('fan-out')!.taskName, 's.add');
  });

  it('each toDict() is a fresh copy: a fire that assigns its ids does not change the next one', () => {
    const app = newApp();
    const add = app.task('s.add', (a: number, b: number) => a + b);
    app.schedule('sum', { every: 5 }, add, [1, 2]).schedule('pipeline', { every: 5 }, chain(add.s(1, 2), add.s(3)));
    for (const name of ['sum', 'pipeline']) {
      const first = app.schedules.get(name)!.toDict();
      first.options.task_id = 'assigned';
      first.args.push('more');
      const steps = first.kwargs['tasks'] as Array<{ options: Record<string, unknown> }> | undefined;
      if (steps) steps[0]!.options['task_id'] = 'assigned';
      const second = app.schedules.get(name)!.toDict();
      assert.equal(second.options.task_id, undefined, `${name}: no id carried over`);
      assert.equal((second.kwargs['tasks'] as Array<{ options: Record<string, unknown> }> | undefined)?.[0]!.options['task_id'], undefined, `${name}: no step id carried over`);
      assert.ok(!second.args.includes('more'), `${name}: args not shared`);
    }
  });

  it('expiresSec defaults to the period of the schedule', () => {
    const app = newApp();
    app.schedule('five', { every: 5 }, 'x.y').schedule('ten', { every: '10m' }, 'x.y').schedule('hourly', { cron: '0 * * * *' }, 'x.y').schedule('set', { every: 5 }, 'x.y', [], { expires: 2.5 });
    assert.deepEqual(
      [...app.schedules.values()].map((s) => [s.name, s.expiresSec]),
      [['five', 5], ['ten', 600], ['hourly', 3600], ['set', 2.5]],
    );
  });

  it('refuses a second schedule with one name, naming it; the first stays', () => {
    const app = newApp();
    app.schedule('nightly', { cron: '30 2 * * *' }, 'x.cleanup');
    refused(() => app.schedule('nightly', { every: 5 }, 'x.other'), /a schedule named 'nightly' is already registered/);
    assert.equal(app.schedules.get('nightly')!.taskName, 'x.cleanup');
    assert.equal(app.schedules.size, 1);
  });

  it('refuses a bad spec, option or target, naming the schedule, and registers nothing', () => {
    const app = newApp();
    const add = app.task('s.add', (a: number, b: number) => a + b);
    refused(() => app.schedule('bad.cron', { cron: '99 * * * *' }, add, [1, 2]), /schedule 'bad\.cron': invalid cron expression/);
    refused(() => app.schedule('bad.every', { every: 0 }, add, [1, 2]), /schedule 'bad\.every': every must be a positive number/);
    refused(() => app.schedule('bad.option', { every: 5 }, add, [1, 2], { queu: 'x' } as never), /schedule 'bad\.option': unknown option 'queu'; known: queue, priority, kwargs, expires, catchUp/);
    refused(() => app.schedule('bad.catchup', { every: 5 }, add, [1, 2], { catchUp: 'some' } as never), /schedule 'bad\.catchup': catchUp must be 'none', 'last', 'all' \(got "some"\)/);
    for (const expires of [0, -1, 'soon']) {
      refused(() => app.schedule('bad.expires', { every: 5 }, add, [1, 2], { expires } as never), /schedule 'bad\.expires': expires must be a positive number of seconds/);
    }
    refused(() => app.schedule('bad.queue', { every: 5 }, add, [1, 2], { queue: '' }), /schedule 'bad\.queue': queue must be a non-empty string/);
    refused(() => app.schedule('bad.priority', { every: 5 }, add, [1, 2], { priority: 256 }), /schedule 'bad\.priority': priority must be an integer from 0 to 255/);
    refused(() => app.schedule('bad.args', { every: 5 }, 'x.y', 'not an array' as never), /schedule 'bad\.args': args must be an array/);
    refused(() => app.schedule('bad.target', { every: 5 }, 42 as never), /schedule 'bad\.target': give a task/);
    refused(() => app.schedule('empty.name', { every: 5 }, ''), /schedule 'empty\.name': give a task/);
    refused(() => app.schedule('', { every: 5 }, 'x.y'), /a schedule needs a name/);
    assert.equal(app.schedules.size, 0);
    // A name whose registration failed is free.
    app.schedule('bad.cron', { cron: '0 * * * *' }, add, [1, 2]);
    assert.equal(app.schedules.size, 1);
  });

  it('refuses queue, priority or kwargs on a workflow, and a workflow with args', () => {
    const app = newApp();
    const add = app.task('s.add', (a: number, b: number) => a + b);
    const flow = chain(add.s(1, 2), add.s(3));
    refused(() => app.schedule('w.queue', { every: 5 }, flow, [], { queue: 'q' }), /schedule 'w\.queue': queue cannot be set on a workflow's schedule/);
    refused(() => app.schedule('w.priority', { every: 5 }, flow, [], { priority: 1 }), /schedule 'w\.priority': priority cannot be set on a workflow's schedule/);
    refused(() => app.schedule('w.kwargs', { every: 5 }, flow, [], { kwargs: { a: 1 } }), /schedule 'w\.kwargs': kwargs cannot be set on a workflow's schedule/);
    refused(() => app.schedule('w.args', { every: 5 }, flow, [1] as never), /schedule 'w\.args': a workflow takes no args/);
    assert.equal(app.schedules.size, 0);
    app.schedule('w.ok', { every: 5 }, flow, [], { expires: 60, catchUp: 'last' });
    assert.equal(app.schedules.get('w.ok')!.expiresSec, 60);
    assert.equal(app.schedules.get('w.ok')!.catchUp, 'last');
  });
});
