// What the CLI commands share: building the app from --app or the environment, and failing with one line.

import { checkUrl } from '../app/config.ts';
import { Fennel } from '../app/fennel.ts';
import { FennelError } from '../errors.ts';
import { loadApp } from '../worker/load-app.ts';

export interface AppFlags {
  app?: string;
  broker?: string;
  backend?: string;
}

/** Exits with `code` after printing one line to stderr (2: bad usage or input). */
export function fail(message: string, code = 2): never {
  process.stderr.write(`fennel: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(code);
}

/** The app of `--app`, or one configured from --broker/--backend and the environment. */
export async function appFrom(flags: AppFlags): Promise<Fennel> {
  // A URL typed on the command line is named as such when it is wrong (not as the option 'broker').
  if (flags.broker) checkUrl('broker', flags.broker, '--broker');
  if (flags.backend) checkUrl('backend', flags.backend, '--backend');
  if (flags.app) {
    const { app } = await loadApp(flags.app);
    if (!flags.broker && !flags.backend) return app;
    const { config } = app;
    // As with the environment: a backend that was the broker's URL (the default) follows a new broker.
    const backend = flags.backend ?? (flags.broker && config.backend === config.broker ? flags.broker : config.backend);
    return new Fennel({ ...config, ...(flags.broker ? { broker: flags.broker } : {}), backend });
  }
  return new Fennel({ ...(flags.broker ? { broker: flags.broker } : {}), ...(flags.backend ? { backend: flags.backend } : {}) });
}

/** Runs a command body, turning a FennelError into one line and exit code 2 (1 for an unavailable broker). */
export async function guard(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof FennelError || (error as { code?: string }).code?.startsWith('FENNEL_')) {
      fail((error as Error).message, (error as { code?: string }).code === 'FENNEL_BROKER_UNAVAILABLE' ? 1 : 2);
    }
    throw error;
  }
}

/** A command-line argument as a task argument: JSON where it parses (2, true, {"a":1}), else a string. */
export function parseArg(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
