// The Wyndor page and the dashboard in real headless Chromium, against a real gateway and a real worker process
// (process pool, task events on) on sqlite://, as `npm start` runs them. Waits are on what the page shows,
// never on time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { stopProcess, tempDb, type RunningWorker } from '../support/process.ts';
import type { RunningGateway } from '../gateway/support.ts';
import { chromiumSkipReason, startDashboard, stopDashboard, type LaunchedBrowser } from './support.ts';

// The page's DOM as far as these tests read it: the functions below run in the browser, and the project
// compiles without TypeScript's DOM library.
interface PageElement {
  textContent: string | null;
  hidden?: boolean;
  noValidate?: boolean;
  classList?: { contains(name: string): boolean };
  querySelectorAll(selector: string): Iterable<PageElement>;
}
declare const document: { getElementById(id: string): PageElement | null; querySelectorAll(selector: string): Iterable<PageElement> };

const APP = 'examples/wyndor/tasks.ts';
const WAIT = { timeout: 30_000 };

describe('Wyndor page and dashboard in Chromium', { skip: chromiumSkipReason() }, () => {
  const db = tempDb();
  let worker: RunningWorker;
  let gateway: RunningGateway;
  let browser: LaunchedBrowser;
  let page: Page;

  before(async () => {
    ({ worker, gateway, browser, page } = await startDashboard({ app: APP, brokerUrl: db.url, workerFlags: ['-P', 'process', '-c', '1', '-E'], gatewayFlags: ['--site', 'examples/wyndor/public'] }));
  });
  after(async () => {
    await stopDashboard({ browser, gateway, worker });
    db.cleanup();
  });

  async function solveFor(p: number, objective: string): Promise<void> {
    await page.fill('#p', String(p));
    await page.click('#wyndor-form button[type=submit]');
    await page.waitForFunction((expected) => document.getElementById('objective')?.textContent === expected && !document.getElementById('wyndor-result')?.hidden, objective, WAIT);
  }

  it('submits p = 100 and shows objective 1500 (doors 4, windows 3), then p = 500 and shows 3600 (doors 2, windows 6)', async () => {
    await page.goto(`${gateway.url}/`);
    await solveFor(100, '1500');
    assert.equal(await page.textContent('#doors'), '4');
    assert.equal(await page.textContent('#windows'), '3');
    const usage = await page.evaluate(() => [...document.querySelectorAll('#usage tbody tr')].map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    assert.deepEqual(usage, [
      ['door_fab', '4', '4', '0'],
      ['window_fab', '6', '12', '6'],
      ['assembly', '18', '18', '0'],
    ]);
    await solveFor(500, '3600');
    assert.equal(await page.textContent('#doors'), '2');
    assert.equal(await page.textContent('#windows'), '6');
  });

  /** What the Wyndor form shows: its status line, and the answer (hidden or not, and its text, which must be gone too). */
  async function wyndorShows(): Promise<{ status: string; error: boolean; hidden: boolean; objective: string; doors: string; rows: number }> {
    return page.evaluate(() => ({
      status: document.getElementById('wyndor-status')?.textContent ?? '',
      error: document.getElementById('wyndor-status')?.classList?.contains('error') ?? false,
      hidden: document.getElementById('wyndor-result')?.hidden ?? false,
      objective: document.getElementById('objective')?.textContent ?? '',
      doors: document.getElementById('doors')?.textContent ?? '',
      rows: [...document.querySelectorAll('#usage tbody tr')].length,
    }));
  }

  it('with the browser\'s validation bypassed, refuses an empty p (no p = 0) and a negative one: the old answer goes, the reason shows', async () => {
    await solveFor(100, '1500');
    // The attribute checks (required, min=0) are the browser's; a page must not depend on them alone.
    await page.evaluate(() => {
      document.getElementById('wyndor-form')!.noValidate = true;
    });
    await page.fill('#p', '');
    await page.click('#wyndor-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('wyndor-status')?.classList?.contains('error') === true, undefined, WAIT);
    const empty = await wyndorShows();
    assert.match(empty.status, /^p: enter the profit per window, a number of 0 or more$/);
    assert.deepEqual({ ...empty, status: '' }, { status: '', error: true, hidden: true, objective: '', doors: '', rows: 0 });

    // A value the page passes on is checked by the server's schema; its reason is shown the same way.
    await solveFor(100, '1500');
    await page.fill('#p', '-5');
    await page.click('#wyndor-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('wyndor-status')?.classList?.contains('error') === true, undefined, WAIT);
    const negative = await wyndorShows();
    assert.match(negative.status, /^400: arguments of 'wyndor\.solve' rejected: args\.0: .*>=0/);
    assert.deepEqual({ ...negative, status: '' }, { status: '', error: true, hidden: true, objective: '', doors: '', rows: 0 });
    await page.evaluate(() => {
      document.getElementById('wyndor-form')!.noValidate = false;
    });
  });

  it('shows the gateway\'s 400 reason for an invalid model, and "infeasible" for an infeasible one', async () => {
    await page.fill('#lp', JSON.stringify({ sense: 'max', objective: {}, constraints: [] }));
    await page.click('#lp-form button[type=submit]');
    await page.waitForFunction(() => /400: .*objective: needs at least one variable/.test(document.getElementById('lp-status')?.textContent ?? ''), undefined, WAIT);
    await page.fill('#lp', JSON.stringify({ sense: 'max', objective: { x: 1 }, constraints: [{ name: 'low', coefs: { x: 1 }, max: 1 }, { name: 'high', coefs: { x: 1 }, min: 2 }] }));
    await page.click('#lp-form button[type=submit]');
    await page.waitForFunction(() => /^infeasible: /.test(document.getElementById('lp-status')?.textContent ?? ''), undefined, WAIT);
  });

  it('dashboard: shows the worker online and the solve succeeded; a click shows the task\'s detail', async () => {
    await page.goto(`${gateway.url}/dashboard/`);
    await page.waitForSelector(`#workers tr[data-pid="${worker.child.pid}"][data-status="online"]`, WAIT);
    // The Wyndor app registers no schedules: once read, the Schedules panel stays hidden.
    await page.waitForSelector('#schedules-section[data-loaded="true"]', { ...WAIT, state: 'hidden' });
    assert.equal(await page.evaluate(() => document.getElementById('schedules-section')?.hidden), true);
    const row = await page.waitForSelector('#tasks tr[data-state="SUCCESS"]', WAIT);
    assert.match((await row.textContent()) ?? '', /wyndor\.solve|lp\.solve/);
    await page.fill('#filter', 'wyndor.solve');
    await page.waitForFunction(() => [...document.querySelectorAll('#tasks tbody tr')].every((tr) => tr.textContent?.includes('wyndor.solve')), undefined, WAIT);
    await page.click('#tasks tr[data-state="SUCCESS"]');
    await page.waitForFunction(() => /"state": "SUCCESS"/.test(document.getElementById('detail-stored')?.textContent ?? ''), undefined, WAIT);
    assert.match((await page.textContent('#detail-stored')) ?? '', /"objective": (1500|3600)/);
  });

  it('dashboard: a worker killed with SIGKILL goes offline after a few missed heartbeats', async () => {
    const pid = worker.child.pid;
    await page.waitForSelector(`#workers tr[data-pid="${pid}"][data-status="online"]`, WAIT);
    await stopProcess(worker, 'SIGKILL');
    await page.waitForSelector(`#workers tr[data-pid="${pid}"][data-status="offline"]`, WAIT);
  });
});
