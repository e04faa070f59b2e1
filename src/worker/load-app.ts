// Loads the user's tasks module (`--app ./tasks.ts`) and finds the Fennel app it exports. Used by the CLI
// and by every pool slot, which loads the same module to get the same registry.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isFennelApp, type Fennel } from '../app/fennel.ts';
import { ConfigError } from '../errors.ts';

/** Imports `path` and returns its Fennel app: the export named `app`, `default`, or the only one. */
export async function loadApp(path: string): Promise<{ app: Fennel; path: string }> {
  const full = resolve(path);
  if (!existsSync(full)) throw new ConfigError(`--app ${path}: no such file`);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(full).href)) as Record<string, unknown>;
  } catch (error) {
    // One line: a compiler's multi-line report is kept on `cause` for whoever wants the detail.
    const lines = String((error as Error).message ?? error).split('\n').filter((l) => l.trim());
    const first = lines.find((l) => l.includes('ERROR:')) ?? lines[0] ?? 'unknown error';
    throw new ConfigError(`--app ${path}: the module failed to load: ${first.trim()}`, { cause: error });
  }
  const candidates = [module['app'], module['default'], ...Object.values(module)];
  const app = candidates.find(isFennelApp);
  if (!app) throw new ConfigError(`--app ${path}: the module exports no Fennel app (export const app = new Fennel())`);
  return { app, path: full };
}
