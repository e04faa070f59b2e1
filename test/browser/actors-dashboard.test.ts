// The dashboard's Actors panel in real headless Chromium, against a real gateway and a real worker hosting actors
// (--actors) on sqlite://: both actors with their class, mode, host, state, restarts, the calls each has run and
// their metadata, and the live host; an actor name and metadata made of HTML are shown as text, never as markup
// (the panel re-reads /api/actors every few seconds). Waits are on what the page shows, never on time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { tempDb, uniqueQueue, type RunningWorker } from '../support/process.ts';
import type { RunningGateway } from '../gateway/support.ts';
import { chromiumSkipReason, startDashboard, stopDashboard, type LaunchedBrowser } from './support.ts';

/** Declares the Counter actor class (incr(k)); the worker hosts it, the gateway and this test use its app. */
const APP = 'test/integration/fixtures/names-app.ts';
/** Generous: the worker compiles its app first, and the panel re-reads every 3 s, on a busy 2-core machine. */
const WAIT = { timeout: 60_000 };
/** Names and metadata are user input: these must show as the text they are. Actor names may not contain spaces. */
const HTML_NAME = '<b>x</b>';
const HTML_META = '<img/src=x/onerror=globalThis.__pwned=1>';

const db = tempDb();
// The fixture's app reads its broker from the environment when it is imported: this file's SQLite database.
process.env['FENNEL_BROKER_URL'] = db.url;
const { app, Counter } = await import('../integration/fixtures/names-app.ts');

describe('dashboard Actors panel in Chromium', { skip: chromiumSkipReason() }, () => {
  const node = `${uniqueQueue('uiactors')}@test`;
  let worker: RunningWorker | undefined;
  let gateway: RunningGateway;
  let browser: LaunchedBrowser;
  let page: Page;

  const cells = (selector: string): Promise<string[]> => page.locator(`${selector} td`).allTextContents();

  before(async () => {
    ({ worker, gateway, browser, page } = await startDashboard({ app: APP, brokerUrl: db.url, workerFlags: ['-P', 'async', '-c', '2', '--actors', '-n', node] }));
  });
  after(async () => {
    await stopDashboard({ browser, gateway, worker });
    await app.close();
    db.cleanup();
  });

  it('shows both actors with their host and call count, and the live host', async () => {
    const hits = await Counter.create({ name: 'hits', meta: { team: 'web' } });
    const html = await Counter.create({ name: HTML_NAME, meta: { note: HTML_META } });
    for (const k of [1, 2, 3]) await hits.incr(k);

    await page.goto(`${gateway.url}/dashboard/`);
    await page.waitForSelector('#actors-section[data-loaded="true"]', { ...WAIT, state: 'attached' });
    const hitsRow = `#actors tr[data-id="${hits.id}"]`;
    // The host counts the calls as it runs them and announces them within 3 s; the panel re-reads every 3 s.
    await page.locator(`${hitsRow} td:nth-child(7)`, { hasText: /^3$/ }).waitFor(WAIT);
    assert.equal(await page.locator('#actors-section').isVisible(), true);
    assert.deepEqual(await cells(hitsRow), ['hits', 'Counter', 'single', node, 'available', '0', '3', 'team=web']);
    const htmlRow = `#actors tr[data-id="${html.id}"]`;
    assert.deepEqual(await cells(htmlRow), [HTML_NAME, 'Counter', 'single', node, 'available', '0', '0', `note=${HTML_META}`]);
    // Sorted by name, as the name server lists them ('<' before 'h').
    assert.deepEqual(await page.locator('#actors tbody tr').evaluateAll((rows) => rows.map((tr) => (tr as unknown as { dataset: Record<string, string> }).dataset['actor'])), [HTML_NAME, 'hits']);
    assert.equal(await page.locator('#actors-count').textContent(), '2 of 2 available');

    const hostRow = `#actor-hosts tr[data-host="${node}"]`;
    await page.locator(`${hostRow} td:nth-child(4)`, { hasText: /^3$/ }).waitFor(WAIT);
    assert.deepEqual((await cells(hostRow)).slice(0, 4), [node, 'Counter', '2', '3']);
    assert.match((await cells(hostRow))[4] ?? '', /^\d+ s ago$/);
  });

  it('renders an actor name and metadata made of HTML as text, not markup', async () => {
    const row = page.locator('#actors tr', { hasText: HTML_NAME });
    assert.equal(await row.count(), 1);
    assert.equal(await row.locator('td').first().innerHTML(), '&lt;b&gt;x&lt;/b&gt;');
    assert.equal(await row.locator('td').last().innerHTML(), 'note=&lt;img/src=x/onerror=globalThis.__pwned=1&gt;');
    assert.equal(await page.locator('#actors-section b, #actors-section img').count(), 0, 'no element made from the name or the metadata');
    assert.equal(await page.evaluate(() => (globalThis as Record<string, unknown>)['__pwned']), undefined, 'no script ran');
  });
});
