// Bad task and call options fail at the call, naming the option and the forms it accepts.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { backoffMs, parseRateLimit, toDate } from '../../../src/app/options.ts';
import { ConfigError, Fennel } from '../../../src/index.ts';

const app = new Fennel({ broker: `memory://${randomUUID()}` });
const add = app.task('t.add', (a: number, b: number) => a + b);

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && pattern.test(e.message), String(pattern));
}

describe('option checks', () => {
  it('refuses unknown call options with a suggestion, and unknown task options', () => {
    refused(() => add.applyAsync([1, 2], { countdwn: 5 } as never), /call of 't\.add': unknown option 'countdwn' — did you mean 'countdown'\?/);
    refused(() => app.task('t.x', () => 1, { retrys: 3 } as never), /task 't\.x': unknown option 'retrys'/);
  });

  it('refuses negative or non-numeric limits', () => {
    refused(() => add.applyAsync([1, 2], { countdown: -1 }), /option 'countdown' must be a number ≥ 0 \(got -1\)/);
    refused(() => add.applyAsync([1, 2], { timeLimitMs: 0 }), /option 'timeLimitMs' must be a positive number/);
    refused(() => add.applyAsync([1, 2], { priority: 300 }), /option 'priority' must be an integer from 0 to 255/);
    refused(() => app.task('t.y', () => 1, { maxRetries: -2 }), /option 'maxRetries' must be an integer ≥ 0/);
    refused(() => add.applyAsync([1, 2], { softTimeLimitMs: 'soon' as never }), /option 'softTimeLimitMs' must be a positive number \(got "soon"\)/);
  });

  it('refuses an eta that does not parse, accepts ISO 8601 with a zone', () => {
    refused(() => add.applyAsync([1, 2], { eta: 'tomorrow' }), /option 'eta' must be a Date or an ISO 8601 string with a time zone/);
    refused(() => add.applyAsync([1, 2], { eta: new Date('nope') }), /got Invalid Date/);
    refused(() => add.applyAsync([1, 2], { eta: '2026-11-26T12:00:00' }), /option 'eta'/); // no zone: ambiguous
    refused(() => add.applyAsync([1, 2], { eta: new Date(), countdown: 1 }), /eta or countdown, not both/);
    assert.equal(toDate('2026-11-26T12:00:00+01:00')?.toISOString(), '2026-11-26T11:00:00.000Z');
  });

  it('refuses a rate limit that does not parse, and reads the ones that do', () => {
    refused(() => app.task('t.z', () => 1, { rateLimit: '10 per minute' }), /option 'rateLimit' must be a rate such as '100\/s', '10\/m' or '1\/h'/);
    refused(() => app.task('t.w', () => 1, { rateLimit: '0/s' }), /rateLimit/);
    assert.equal(parseRateLimit('100/s')?.perMs, 0.1);
    assert.equal(parseRateLimit('60/m')?.perMs, 0.001);
    assert.equal(parseRateLimit('5')?.perMs, 0.005);
  });

  it('refuses deduplicate without a taskId', () => {
    refused(() => add.applyAsync([1, 2], { deduplicate: true }), /deduplicate needs a taskId/);
  });

  it('refuses bad retry options', () => {
    refused(() => app.task('t.v', () => 1, { retryBackoff: { baseMs: -1 } }), /option 'retryBackoff' must be true, false or \{ baseMs, maxMs, jitter \} with baseMs a positive number/);
    refused(() => app.task('t.u', () => 1, { autoRetryFor: [42 as never] }), /option 'autoRetryFor' must be an array of error classes or error names/);
  });

  it('computes exponential backoff: base · 2^retries, capped, with full jitter', () => {
    assert.deepEqual([0, 1, 2, 3, 10].map((n) => backoffMs({ baseMs: 100, maxMs: 500, jitter: false }, n)), [100, 200, 400, 500, 500]);
    assert.equal(backoffMs(true, 2, () => 0.5), 2000);
    assert.equal(backoffMs(false, 5), 0);
  });
});
