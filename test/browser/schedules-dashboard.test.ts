// The dashboard's Schedules panel in real headless Chromium, against a real gateway and a real `fennel beat`
// process on sqlite://: the app's two schedules, "no beat running" before the beat starts, the beat leading and
// its first fire once it runs, and "no beat running" again after its SIGTERM (the panel re-reads /api/schedules
// every few seconds). Waits are on what the page shows, never on time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { runCli, stopProcess, tempDb, uniqueQueue, type RunningWorker } from '../support/process.ts';
import { startGateway, type RunningGateway } from '../gateway/support.ts';
import { chromiumSkipReason, launchBrowser } from './support.ts';

// The page's DOM as far as these tests read it (the project compiles without TypeScript's DOM library).
interface PageElement {
  textContent: string | null;
  hidden?: boolean;
  dataset?: Record<string, string | undefined>;
  querySelectorAll(selector: string): Iterable<PageElement>;
}
declare const document: { getElementById(id: string): PageElement | null; querySelectorAll(selector: string): Iterable<PageElement> };

const APP = 'test/gateway/fixtures/beat-tasks.ts';
/** Generous: the beat compiles its app first, and the panel re-reads every 5 s, on a busy 2-core machine. */
const WAIT = { timeout: 60_000 };

/** What the panel shows: hidden or not, the leader line, and each row's cells. */
function panel(): { hidden: boolean; leader: string; rows: string[][] } {
  return {
    hidden: document.getElementById('schedules-section')?.hidden ?? true,
    leader: document.getElementById('schedules-leader')?.textContent ?? '',
    rows: [...document.querySelectorAll('#schedules tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')),
  };
}

describe('dashboard Schedules panel in Chromium', { skip: chromiumSkipReason() }, () => {
  const db = tempDb();
  const env = { FENNEL_BROKER_URL: db.url, FENNEL_BEAT_GROUP: uniqueQueue('ui') };
  let gateway: RunningGateway;
  let beat: RunningWorker | undefined;
  let browser: { context: BrowserContext; close: () => Promise<void> };
  let page: Page;

  before(async () => {
    gateway = await startGateway(env, [], APP);
    browser = await launchBrowser();
    page = await browser.context.newPage();
  });
  after(async () => {
    await browser?.close();
    if (beat) await stopProcess(beat);
    if (gateway) await stopProcess(gateway.process, 'SIGTERM');
    db.cleanup();
  });

  it('lists the two schedules with "no beat running" before any beat starts', async () => {
    await page.goto(`${gateway.url}/dashboard/`);
    await page.waitForSelector('#schedules-section[data-loaded="true"]', { ...WAIT, state: 'attached' });
    const shown = await page.evaluate(panel);
    assert.equal(shown.hidden, false);
    assert.equal(shown.leader, 'no beat running');
    assert.deepEqual(
      shown.rows.map((r) => r.slice(0, 5)),
      [
        ['gwbeat.every-second', 'every 1s', 'gwbeat.add', 'none', 'never'],
        ['gwbeat.nightly', 'cron 30 2 * * * (Europe/Paris)', 'gwbeat.cleanup', 'last', 'never'],
      ],
    );
    for (const row of shown.rows) assert.match(row[5] ?? '', /^(in \d+ (s|min|h)|due now) · /, `next fire of ${row[0]}`);
  });

  it('shows the beat leading and its first fire; after its SIGTERM, "no beat running" again', async () => {
    beat = runCli(['beat', '-A', APP, '-n', 'gw-beat-ui'], env);
    await page.waitForFunction(
      () => document.getElementById('schedules-leader')?.textContent === 'led by gw-beat-ui' && Boolean([...document.querySelectorAll('#schedules tr[data-schedule="gwbeat.every-second"]')][0]?.dataset?.['lastDue']),
      undefined,
      WAIT,
    );
    const leading = await page.evaluate(panel);
    assert.match(leading.rows[0]![4] ?? '', /^\d+ (s|min) ago · /, 'the every-second schedule has a last fire');
    assert.equal(leading.rows[1]![4], 'never', 'the nightly schedule has not fired');

    beat.child.kill('SIGTERM');
    assert.deepEqual(await beat.exited, { code: 0, signal: null });
    beat = undefined;
    await page.waitForFunction(() => document.getElementById('schedules-leader')?.textContent === 'no beat running', undefined, WAIT);
    const stopped = await page.evaluate(panel);
    assert.notEqual(stopped.rows[0]![4], 'never', 'the last fire stays after the beat stops');
  });
});
