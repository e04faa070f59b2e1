// The autoscaler's rule (src/worker/autoscale.ts, Celery's _maybe_scale), driven tick by tick with mocked timers
// and a stand-in pool: grow at once toward the tasks held (at most max), shrink toward them (at least min) only
// once the keepalive has passed since the last growth, and a new range applied at once. The real worker's
// autoscaling under a backlog is in test/integration/control.test.ts.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Autoscaler, checkAutoscale } from '../../../src/worker/autoscale.ts';
import { ConfigError } from '../../../src/errors.ts';

describe('the autoscaler', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  /** A pool whose size the autoscaler sets, and the number of tasks held. */
  function setup(options = { max: 5, min: 1, keepaliveSec: 10 }) {
    const pool = { size: options.min, held: 0, resizes: [] as number[] };
    const scaler = new Autoscaler(options, async (size) => {
      pool.size = size;
      pool.resizes.push(size);
    });
    scaler.start(() => pool.held, () => pool.size);
    /** One tick, and the microtasks of its resize. */
    const tick = async (): Promise<void> => {
      mock.timers.tick(1000);
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    return { pool, scaler, tick };
  }

  it('grows at once toward the tasks held, never past max', async () => {
    const { pool, scaler, tick } = setup();
    pool.held = 3;
    await tick();
    assert.equal(pool.size, 3);
    pool.held = 40;
    await tick();
    assert.equal(pool.size, 5);
    scaler.stop();
  });

  it('shrinks only once the keepalive has passed since it last grew, and never below min', async () => {
    const { pool, scaler, tick } = setup();
    pool.held = 4;
    await tick();
    assert.equal(pool.size, 4);
    pool.held = 0;
    for (let s = 0; s < 9; s++) await tick();
    assert.equal(pool.size, 4, 'within the keepalive: still 4');
    await tick();
    await tick();
    assert.equal(pool.size, 1, 'after it: down to min');
    assert.deepEqual(pool.resizes, [4, 1]);
    scaler.stop();
  });

  it('does not shrink a pool it never grew', async () => {
    const { pool, scaler, tick } = setup({ max: 5, min: 2, keepaliveSec: 0 });
    pool.size = 4; // as after a range change that it did not make
    for (let s = 0; s < 3; s++) await tick();
    assert.equal(pool.size, 4);
    scaler.stop();
  });

  it('applies a new range at once, and refuses a bad one', async () => {
    const { pool, scaler } = setup();
    pool.size = 5;
    await scaler.update(3, 1);
    assert.equal(pool.size, 3);
    await scaler.update(8, 4);
    assert.equal(pool.size, 4);
    assert.deepEqual([scaler.max, scaler.min], [8, 4]);
    await assert.rejects(scaler.update(2, 3), ConfigError);
    assert.throws(() => checkAutoscale(0, 0), /max must be a positive integer/);
    assert.throws(() => checkAutoscale(2, 1.5), /min must be a positive integer/);
    assert.throws(() => new Autoscaler({ max: 1, min: 2 }, async () => {}), /greater than max/);
    scaler.stop();
  });
});
