// The dashboard's remote control in real headless Chromium, against a real gateway (with a token) and a real
// worker process (process pool) on sqlite://: the worker row's buttons appear with the token only; "+1 slot" and
// "−1 slot" resize the worker's pool (as app.control's stats says); a running task is listed under "Running now"
// and its "revoke" button terminates it (REVOKED); "shutdown", once its confirm dialog is accepted, stops the
// worker, which answers no ping afterwards. Waits are on what the page, the worker or the store shows, never on time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { Fennel } from '../../src/index.ts';
import { tempDb, uniqueQueue, waitFor, type RunningWorker } from '../support/process.ts';
import { TASKS, type RunningGateway } from '../gateway/support.ts';
import { chromiumSkipReason, startDashboard, stopDashboard, type LaunchedBrowser } from './support.ts';

const TOKEN = 'dashboard-control-token';
/** Generous: the worker compiles its app and forks its pool slots, and the page polls every 2 s, on a busy 2-core machine. */
const WAIT = { timeout: 60_000 };

describe('dashboard remote control in Chromium', { skip: chromiumSkipReason() }, () => {
  const db = tempDb();
  const node = `${uniqueQueue('uictl')}@test`;
  /** The test's own client on the broker: what app.control and the result store say, besides the page. */
  const client = new Fennel({ broker: db.url });
  let worker: RunningWorker | undefined;
  let gateway: RunningGateway;
  let browser: LaunchedBrowser;
  let page: Page;

  const row = `#workers tr[data-node="${node}"][data-status="online"]`;

  before(async () => {
    ({ worker, gateway, browser, page } = await startDashboard({ app: TASKS, brokerUrl: db.url, workerFlags: ['-P', 'process', '-c', '1', '-n', node], gatewayEnv: { FENNEL_GATEWAY_TOKEN: TOKEN } }));
  });
  after(async () => {
    await stopDashboard({ browser, gateway, worker });
    await client.close();
    db.cleanup();
  });

  async function maxConcurrency(): Promise<number | undefined> {
    const stats = await client.control.inspect({ destination: [node], timeoutMs: 10_000 }).stats();
    return (stats[node]?.['pool'] as { 'max-concurrency'?: number } | undefined)?.['max-concurrency'];
  }

  /** Waits until the pool has `size` slots: a grown process pool counts a slot once it has started. */
  async function poolSize(size: number): Promise<void> {
    await waitFor(async () => (await maxConcurrency()) === size, `the pool to have ${size} slot(s)`, 60_000);
  }

  /** The status line once it says `outcome` (ok, error, no-reply) about `label`. */
  async function statusOf(label: string, outcome: string): Promise<string> {
    const line = page.locator(`#control-status[data-outcome="${outcome}"]`, { hasText: label });
    await line.waitFor(WAIT);
    return (await line.textContent()) ?? '';
  }

  it('shows no control without a token, and shutdown, +1 slot and −1 slot on the worker row with one', async () => {
    const plain = await browser.context.newPage();
    await plain.goto(`${gateway.url}/dashboard/`);
    await plain.locator('#control-hint').waitFor({ ...WAIT, state: 'visible' });
    assert.equal(await plain.locator('button[data-action]').count(), 0);
    await plain.close();

    await page.goto(`${gateway.url}/dashboard/#token=${TOKEN}`);
    await page.locator(`${row} button[data-action="pool-grow"]`).waitFor(WAIT);
    assert.deepEqual(await page.locator(`${row} td.control button`).allTextContents(), ['shutdown', '+1 slot', '−1 slot']);
    assert.equal(await page.locator('#control-hint').isHidden(), true);
  });

  it('"+1 slot" grows the worker\'s pool and "−1 slot" shrinks it again, saying so on the status line', async () => {
    assert.equal(await maxConcurrency(), 1);
    await page.locator(`${row} button[data-action="pool-grow"]`).click();
    assert.match(await statusOf('+1 slot', 'ok'), new RegExp(`^\\+1 slot: ${node}: pool will grow$`));
    await poolSize(2);
    // The row's concurrency follows with the worker's next heartbeat.
    await page.locator(`${row} td:nth-child(4)`, { hasText: /^2$/ }).waitFor(WAIT);

    await page.locator(`${row} button[data-action="pool-shrink"]`).click();
    await statusOf('−1 slot', 'ok');
    await poolSize(1);
    // One slot is kept: the worker refuses, and the status line shows its reason.
    await page.locator(`${row} button[data-action="pool-shrink"]`).click();
    assert.match(await statusOf('−1 slot', 'error'), new RegExp(`^−1 slot: ${node}: error: cannot shrink the pool by 1`));
    assert.equal(await maxConcurrency(), 1);
  });

  it('lists a running task under "Running now"; its "revoke" terminates it, and its result is REVOKED', async () => {
    const result = client.sendTask('gw.sleep', [600_000]);
    const taskRow = page.locator(`#active tr[data-task="${result.id}"][data-node="${node}"]`);
    await taskRow.waitFor(WAIT);
    assert.equal(await taskRow.locator('td').nth(1).textContent(), 'gw.sleep');
    await taskRow.locator('button[data-action="revoke"]').click();
    assert.equal(await statusOf(`revoke ${result.id}`, 'ok'), `revoke ${result.id}: ${node}: terminate: ${result.id}`);
    await waitFor(async () => (await result.status()) === 'REVOKED', `task ${result.id} REVOKED`, WAIT.timeout);
    await taskRow.waitFor({ ...WAIT, state: 'detached' });
  });

  it('"shutdown" asks first: dismissed, nothing happens; accepted, the worker stops and answers no ping', async () => {
    const dialogs: string[] = [];
    page.once('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    await page.locator(`${row} button[data-action="shutdown"]`).click();
    await waitFor(() => dialogs.length === 1, 'the confirm dialog', WAIT.timeout);
    assert.match(dialogs[0]!, new RegExp(`^Shut down ${node}\\?`));
    assert.equal(await page.locator('#control-status', { hasText: 'shutdown' }).count(), 0);
    assert.deepEqual(await client.control.ping({ destination: [node], timeoutMs: 10_000 }), [{ [node]: { ok: 'pong' } }]);

    page.once('dialog', (dialog) => void dialog.accept());
    await page.locator(`${row} button[data-action="shutdown"]`).click();
    assert.equal(await statusOf('shutdown', 'ok'), `shutdown: ${node}: shutting down`);
    const exit = await worker!.exited;
    assert.equal(exit.code, 0, `the worker exits as on SIGTERM: ${JSON.stringify(exit)}; ${worker!.lines.slice(-10).join('\n')}`);
    worker = undefined;
    assert.deepEqual(await client.control.ping({ destination: [node], timeoutMs: 1000 }), []);
    // It said goodbye (worker-offline): its row goes offline and loses its buttons.
    await page.locator(`#workers tr[data-node="${node}"][data-status="offline"]`).waitFor(WAIT);
    assert.equal(await page.locator(`#workers tr[data-node="${node}"] button`).count(), 0);
  });
});
