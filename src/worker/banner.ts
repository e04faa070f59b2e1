// The start banner of a worker in the pretty log format, after Celery's: who it is, what it connects to, how it
// runs tasks, which queues it reads and which tasks it knows. Printed once, before the pool starts, so whoever
// watches a worker that fails to come up can see what it was trying to do. URLs are shown with their passwords
// masked. The JSON format has no banner: its "worker ready" line carries the same facts as fields.

import { relative } from 'node:path';
import { STARMAP_TASK } from './workflow.ts';
import { maskUrl } from '../util/url.ts';

export interface BannerFacts {
  name: string;
  version: string;
  /** The tasks module's path, if the worker was given one. */
  appPath?: string | undefined;
  broker: string;
  backend: string;
  pool: string;
  concurrency: number;
  taskEvents: boolean;
  /** The signing keys' ids (signingKey), the signing one first; undefined: messages are not signed. */
  signingKeyIds?: readonly string[] | undefined;
  queues: readonly string[];
  tasks: Iterable<string>;
}

export function renderBanner(facts: BannerFacts, cwd = process.cwd()): string {
  const path = facts.appPath === undefined ? undefined : relative(cwd, facts.appPath);
  const config: Array<[string, string]> = [
    ...(path === undefined ? [] : [['app', path.startsWith('..') || path === '' ? facts.appPath! : `./${path}`] as [string, string]]),
    ['transport', maskUrl(facts.broker)],
    ['results', maskUrl(facts.backend)],
    ['concurrency', `${facts.concurrency} (${facts.pool} pool)`],
    ['task events', facts.taskEvents ? 'ON' : 'OFF (enable -E to monitor tasks in this worker)'],
    ['signed', facts.signingKeyIds ? `ON: runs only messages signed with key ${facts.signingKeyIds.join(' or ')}` : 'OFF (any message on its queues runs)'],
  ];
  // Like Celery's own `celery.*` tasks, Fennel's built-in one is not the user's business here.
  const tasks = [...facts.tasks].filter((t) => t !== STARMAP_TASK).sort();
  return [
    '',
    ` -------------- ${facts.name} v${facts.version} (node ${process.version}, ${process.platform} ${process.arch})`,
    '',
    '[config]',
    ...config.map(([key, value]) => `.> ${`${key}:`.padEnd(13)} ${value}`),
    '',
    '[queues]',
    ...facts.queues.map((q) => `.> ${q}`),
    '',
    '[tasks]',
    ...(tasks.length ? tasks.map((t) => `  . ${t}`) : ['  (none registered)']),
    '',
    '',
  ].join('\n');
}
