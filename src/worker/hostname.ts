// The worker's node name (Celery's `-n/--hostname`): `name@host`, as it appears in events, in stored results and
// on the dashboard. Celery's rules: a name without `@` is a host, given the default name part; then `%h` is the
// machine's hostname, `%n` its first label, `%d` the rest (the domain), `%%` a percent sign. Fennel adds `%p`, the
// worker's pid (Celery's `%p` is the node name itself, for log file names, which cannot be used to make one).
//
// The default, `fennel.%p@%h`, differs from Celery's `celery@%h` on purpose: two workers on one machine under one
// name merge on a dashboard (one row, two processes' heartbeats and counts) and make a result's `worker` field
// ambiguous. The pid keeps the default unique on a host and still readable; a restarted worker gets a new name,
// so whoever wants a stable one says so (`-n math@%h`).

import { hostname as osHostname } from 'node:os';
import { ConfigError } from '../errors.ts';

export const DEFAULT_NODENAME = 'fennel.%p@%h';

/** What `%h`, `%n`, `%d` and `%p` stand for; the running process's by default (tests pass their own). */
export interface NodeFacts {
  host: string;
  pid: number;
}

/** The node name that `pattern` (a `-n` value) stands for on this machine. Throws ConfigError for an unknown `%x`. */
export function nodeName(pattern: string, facts: NodeFacts = { host: osHostname(), pid: process.pid }): string {
  // Celery's default_nodename: "vm2" names the host, not the worker.
  const full = pattern.includes('@') ? pattern : `fennel@${pattern}`;
  const dot = facts.host.indexOf('.');
  const keys: Record<string, string> = {
    h: facts.host,
    n: dot < 0 ? facts.host : facts.host.slice(0, dot),
    d: dot < 0 ? '' : facts.host.slice(dot + 1),
    p: String(facts.pid),
    '%': '%',
  };
  const name = full.replace(/%(.?)/g, (token, key: string) => {
    const value = keys[key];
    if (value === undefined) throw new ConfigError(`worker name ${JSON.stringify(pattern)}: unknown ${token || '%'} (known: %h hostname, %n its first label, %d its domain, %p pid, %% a percent sign)`);
    return value;
  });
  const at = name.indexOf('@');
  if (at === 0 || at === name.length - 1) throw new ConfigError(`worker name ${JSON.stringify(pattern)} gives ${JSON.stringify(name)}: a name is name@host, with both parts`);
  return name;
}
