// How a worker writes its log. `json`, pino's one object per line, is for machines and log shippers, and what a
// worker writes when its output is not a terminal. `pretty` is for a person at a terminal: a start banner
// (banner.ts), then one line per event:
//   [12:00:01.123] INFO: Task math.add[3f2a1b2c…] succeeded in 1.2 ms: 5
// Both are one pino logger with the same messages and fields. The executor's messages are Celery's (the full
// task id, the runtime in seconds with six decimals), which JSON keeps for grep and for people used to Celery;
// the pretty form is pino-pretty, showing only time, level, message and errors, with the message shortened using
// the fields that say what is in it (`id`, `runtimeSec`), so no message is parsed by guesswork.
// Pretty lines are formatted and written synchronously, on this thread: a transport's thread would lose the last
// lines at `process.exit`, and a worker exits right after logging that it stopped. pino-pretty is loaded only
// then: it takes about 0.1 s to load, which a JSON worker and every producer importing Fennel should not pay.

import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Characters of a task id shown in pretty lines (of a UUID: the first group, enough to tell tasks apart on screen). */
const SHORT_ID = 8;

/** pretty for a terminal, json for anything else (a pipe, a file, a log collector). */
export function defaultLogFormat(stdout: { isTTY?: boolean } = process.stdout): LogFormat {
  return stdout.isTTY ? 'pretty' : 'json';
}

export interface WorkerLog {
  log: Logger;
  /** Writes text as it is, in order with the log lines: the banner. Only the pretty format has one. */
  print: ((text: string) => void) | undefined;
}

/** The worker's logger on stdout: `worker` (its name) and `pid` on every JSON line, as before there was a choice. */
export function workerLog(options: { name: string; level: string; format: LogFormat }): WorkerLog {
  const base = { worker: options.name, pid: process.pid };
  if (options.format === 'json') return { log: pino({ level: options.level, base }), print: undefined };
  const out = pino.destination({ fd: 1, sync: true });
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  const prettify = prettyFactory({
    // Colours on a terminal only: pino-pretty's default (colorette's) also turns them on whenever CI is set.
    colorize: Boolean(process.stdout.isTTY) && !('NO_COLOR' in process.env),
    translateTime: 'SYS:HH:MM:ss.l',
    // Every message is whole on its own; the fields repeat it for machines. Errors keep their stacks.
    include: 'level,time,err',
    messageFormat: (log, messageKey) => readableMessage(log, messageKey),
  });
  return { log: pino({ level: options.level, base }, { write: (line: string) => out.write(prettify(line)) }), print: (text) => out.write(text) };
}

/** The message of a log object for a person: task ids shortened, the runtime in ms (or s), as its fields give them. */
export function readableMessage(log: Record<string, unknown>, messageKey = 'msg'): string {
  const message = log[messageKey];
  let text = typeof message === 'string' ? message : '';
  const id = log['id'];
  if (typeof id === 'string' && id.length > SHORT_ID) text = text.replaceAll(`[${id}]`, `[${shortId(id)}]`);
  const runtimeSec = log['runtimeSec'];
  if (typeof runtimeSec === 'number' && Number.isFinite(runtimeSec)) {
    // The success line says "in 0.001234s" (Celery's wording); other outcomes carry the runtime as a field only.
    const celery = `in ${runtimeSec.toFixed(6)}s`;
    text = text.includes(celery) ? text.replace(celery, `in ${duration(runtimeSec)}`) : `${text} (ran ${duration(runtimeSec)})`;
  }
  return text;
}

/** `3f2a1b2c-…` → `3f2a1b2c…`; an id already short is kept whole. */
export function shortId(id: string): string {
  return id.length > SHORT_ID ? `${id.slice(0, SHORT_ID)}…` : id;
}

/** 0.0000423 → `0.04 ms`, 0.0012 → `1.2 ms`, 0.25 → `250 ms`, 3.5 → `3.50 s`, 125 → `125 s`. */
export function duration(seconds: number): string {
  const ms = seconds * 1000;
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  return seconds < 100 ? `${seconds.toFixed(2)} s` : `${seconds.toFixed(0)} s`;
}
