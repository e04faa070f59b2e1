// Test support for browser tests: Debian's Chromium driven by playwright-core, headless, with a fresh profile.
// Without /usr/bin/chromium the tests skip with one line saying why, except on CI (CI=true), where they fail.
// startDashboard/stopDashboard: the usual rig of a page test, a real worker, a real gateway and the browser.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startGateway, type RunningGateway } from '../gateway/support.ts';
import { startWorker, stopProcess, type RunningWorker } from '../support/process.ts';

export const CHROMIUM = '/usr/bin/chromium';

/** Why browser tests cannot run here, or false if they can; throws on CI. */
export function chromiumSkipReason(): string | false {
  if (existsSync(CHROMIUM)) return false;
  const reason = `Chromium not installed at ${CHROMIUM} (apt-get install chromium)`;
  if (process.env['CI'] === 'true') throw new Error(`${reason} (CI=true: the browser tests are required)`);
  return reason;
}

export interface LaunchedBrowser {
  context: BrowserContext;
  close: () => Promise<void>;
}

/** A headless Chromium with a profile of its own; `close()` ends it and removes the profile. */
export async function launchBrowser(): Promise<LaunchedBrowser> {
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

/** A worker and a gateway on one broker, and a headless Chromium with a page open. */
export interface Dashboard {
  worker: RunningWorker;
  gateway: RunningGateway;
  browser: LaunchedBrowser;
  page: Page;
}

export interface DashboardOptions {
  /** The app the worker and the gateway load. */
  app: string;
  brokerUrl: string;
  /** `fennel worker` flags, e.g. ['-P', 'process', '-c', '1']. */
  workerFlags: string[];
  /** The gateway's environment besides FENNEL_BROKER_URL (brokerUrl), e.g. a token. */
  gatewayEnv?: Record<string, string>;
  gatewayFlags?: string[];
}

/**
 * Starts the worker (and waits for it to be ready), then the gateway, then Chromium with one page: a suite's
 * `before`. If one of them fails to start, stops those already started, and throws.
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const started: Partial<Dashboard> = {};
  try {
    started.worker = await startWorker(options.app, options.brokerUrl, options.workerFlags);
    started.gateway = await startGateway({ FENNEL_BROKER_URL: options.brokerUrl, ...options.gatewayEnv }, options.gatewayFlags, options.app);
    started.browser = await launchBrowser();
    started.page = await started.browser.context.newPage();
    return started as Dashboard;
  } catch (error) {
    await stopDashboard(started);
    throw error;
  }
}

/** Closes the browser, stops the gateway (SIGTERM) and then the worker (SIGKILL): each that is there. A suite's `after`. */
export async function stopDashboard(dashboard: { browser?: LaunchedBrowser | undefined; gateway?: RunningGateway | undefined; worker?: RunningWorker | undefined }): Promise<void> {
  await dashboard.browser?.close();
  if (dashboard.gateway) await stopProcess(dashboard.gateway.process, 'SIGTERM');
  if (dashboard.worker) await stopProcess(dashboard.worker);
}
