// `fennel worker --app tasks.ts -b URL --backend URL`: the module's app, on the broker and backend the command
// line names. cli/common.ts's appFrom builds a new app from the module's configuration, which suits `call` and
// `status` but not a worker, which needs the module's registered tasks. And a worker is more than its own app:
// its pool slots load the module again, and task code that sends other tasks uses the module's app.
//
// So the URLs go into the environment (FENNEL_BROKER_URL, FENNEL_RESULT_BACKEND) before the module is loaded.
// An app that does not name its broker or backend in code (`new Fennel()`, the usual case) then uses them in
// this process and in every slot, which inherits the environment: `-b` behaves as Celery's, which also works
// through the environment. A module that does name them wins over the environment (Fennel's precedence:
// constructor option, environment, default); for it, this worker's own app is rebuilt with the URLs and the
// module's tasks, so it consumes and stores where the command line says, and the caller is told which settings
// the module's own app, used by task code, keeps.

import { checkUrl } from '../app/config.ts';
import { Fennel } from '../app/fennel.ts';
import { loadApp } from './load-app.ts';

export interface AppUrls {
  broker?: string | undefined;
  backend?: string | undefined;
}

export interface LoadedApp {
  app: Fennel;
  /** The module's resolved path, for pool slots. */
  path: string;
  /** URLs the module sets in code, which its own app (and so task code that sends tasks) keeps using. */
  keptByModule: Array<{ setting: 'broker' | 'backend'; url: string }>;
}

export async function loadAppWithUrls(modulePath: string, urls: AppUrls): Promise<LoadedApp> {
  // Checked here, as cli/common.ts's appFrom does: a bad URL is named as the flag it came from, not as the
  // environment variable it is about to become.
  if (urls.broker) checkUrl('broker', urls.broker, '--broker');
  if (urls.backend) checkUrl('backend', urls.backend, '--backend');
  if (urls.broker) process.env['FENNEL_BROKER_URL'] = urls.broker;
  if (urls.backend) process.env['FENNEL_RESULT_BACKEND'] = urls.backend;
  const { app, path } = await loadApp(modulePath);
  const { config } = app;
  const wanted = {
    broker: urls.broker ?? config.broker,
    // As with the environment: a backend that was the broker's URL (the default) follows the new broker.
    backend: urls.backend ?? (urls.broker && config.backend === config.broker ? urls.broker : config.backend),
  };
  if (wanted.broker === config.broker && wanted.backend === config.backend) return { app, path, keptByModule: [] };
  const rebuilt = new Fennel({ ...config, ...wanted });
  for (const task of app.registry.values()) if (!rebuilt.registry.has(task.name)) rebuilt.task(task.name, task.fn, task.options);
  const keptByModule = (['broker', 'backend'] as const).filter((s) => wanted[s] !== config[s]).map((setting) => ({ setting, url: config[setting] }));
  return { app: rebuilt, path, keptByModule };
}
