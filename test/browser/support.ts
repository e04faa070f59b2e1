// Test support for browser tests: Debian's Chromium driven by playwright-core, headless, with a fresh profile.
// Without /usr/bin/chromium the tests skip with one line saying why, except on CI (CI=true), where they fail.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why browser tests cannot run here, or false if they can; throws on CI. */
export function chromiumSkipReason(): string | false {
  if (existsSync(CHROMIUM)) return false;
  const reason = `Chromium not installed at ${CHROMIUM} (apt-get install chromium)`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: the browser tests are required)`);
  return reason;
}

/** A headless Chromium with a profile of its own; `close()` ends it and removes the profile. */
export async function launchBrowser(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'fennel-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Quiet and self-contained: no GPU, no sandbox (root in a container), nothing fetched from the network.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
