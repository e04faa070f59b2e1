// The processes an example starts (`npm start`: a gateway and a worker; `npm run demo`: two workers) end with it,
// however it ends:
//   - SIGINT or SIGTERM: it says what it is stopping, sends each child SIGTERM (the fennel CLI's warm shutdown)
//     and waits for them; a second signal sends SIGINT (the worker's cold shutdown, the gateway's exit at once).
//   - its own parent gone: npm runs a script through `sh -c`, and passes a SIGTERM sent to it to that shell, not
//     to the script; the shell dies of it and the script, orphaned, would run on. So it watches its parent (and
//     npm, through the shell) and stops as on SIGTERM when one is gone. Nothing signals that, so it is polled.
//     (A SIGINT sent to npm alone the shell swallows, waiting for the script: it reaches nothing here. A terminal's
//     Ctrl-C goes to the whole foreground process group, this process included.)
//   - killed outright (SIGKILL, a crash): nothing runs in it any more. Each child gets an IPC channel, which the
//     kernel closes then, and exit-with-parent.ts (preloaded into the child) stops it.

import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = resolve(ROOT, 'src/cli/main.ts');
const EXIT_WITH_PARENT = pathToFileURL(resolve(import.meta.dirname, 'exit-with-parent.ts')).href;
/** How often an example looks whether its parent (or npm) is still there. */
const PARENT_POLL_MS = 500;

export interface Child {
  /** What it is, as printed: 'the gateway', 'worker 1'. */
  label: string;
  process: ChildProcess;
  exited: Promise<void>;
}

export function isRunning(child: Child): boolean {
  return child.process.exitCode === null && child.process.signalCode === null;
}

/**
 * Starts `fennel <args>` from the repository's sources, tied to this process (the IPC channel above), in a process
 * group of its own: a terminal's Ctrl-C reaches the whole foreground group, and a worker that got it as well as
 * this process's SIGTERM would take the second for a second Ctrl-C (a cold shutdown). This process decides.
 */
export function startFennel(label: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdout: 'pipe' | 'inherit'; stderr: 'pipe' | 'inherit' }): Child {
  const stdio: StdioOptions = ['ignore', options.stdout, options.stderr, 'ipc'];
  const env = { ...(options.env ?? process.env), FENNEL_EXAMPLE_PARENT_PID: String(process.pid) };
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', '--import', EXIT_WITH_PARENT, CLI, ...args], { cwd: ROOT, env, stdio, detached: true });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return { label, process: child, exited };
}

/** "the gateway (pid 12) and the worker (pid 13)" */
function named(children: Child[]): string {
  const names = children.map((c) => `${c.label} (pid ${c.process.pid})`);
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)}` : (names[0] ?? 'nothing');
}

export interface StopOptions {
  /** The processes to stop, as they are when it stops. */
  children: () => Child[];
  /** Prints a line about the stop. */
  say: (line: string) => void;
  /** The exit code after a signal; being orphaned counts as SIGTERM. */
  exitCode: (signal: NodeJS.Signals) => number;
  /** Runs once the children have exited, before this process exits. */
  cleanUp?: () => Promise<void> | void;
}

export interface Stopper {
  /** Stops for the caller's own reason (a child that ended by itself, say); returns false if already stopping. */
  stop(reason: string, exitCode: number): boolean;
  /** True once a stop has begun: the children are on their way out, and so is this process. */
  readonly stopping: boolean;
}

/**
 * Stops the children on SIGINT and SIGTERM and when this process is orphaned (see above), saying what it stops;
 * once they have exited, cleans up and exits. A second signal stops them at once.
 */
export function stopWithThisProcess({ children, say, exitCode, cleanUp }: StopOptions): Stopper {
  let stopping = false;
  const stop = (reason: string, code: number, signal?: NodeJS.Signals): boolean => {
    const running = children().filter(isRunning);
    if (stopping) {
      if (signal && running.length) {
        say(`${signal} again: stopping ${named(running)} at once`);
        for (const child of running) child.process.kill('SIGINT');
      }
      return false;
    }
    stopping = true;
    say(running.length ? `${reason}: stopping ${named(running)}` : `${reason}: stopping`);
    for (const child of running) child.process.kill('SIGTERM');
    void Promise.all(running.map((c) => c.exited))
      .then(async () => {
        if (running.length) say(`stopped ${named(running)}`);
        await cleanUp?.();
      })
      .finally(() => process.exit(code));
    return true;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop(signal, exitCode(signal), signal));
  whenOrphaned((what) => stop(what, exitCode('SIGTERM')));
  return {
    stop: (reason, code) => stop(reason, code),
    get stopping() {
      return stopping;
    },
  };
}

/** The parent pid of `pid` (Linux: /proc), or undefined if it has exited or cannot be read. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); // "pid (comm) state ppid …"; comm may hold spaces
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Calls `onGone` once when this process's parent has gone (it is then re-parented, so its parent pid changes),
 * or, under npm, when npm has: npm's shell outlives a SIGKILLed npm, but is re-parented in turn. Reading the
 * shell's parent needs Linux's /proc; elsewhere only the parent is watched.
 */
function whenOrphaned(onGone: (what: string) => void): void {
  const parent = process.ppid;
  const shell = process.env['npm_lifecycle_event'] !== undefined && /^(sh|dash|bash|zsh)$/.test(commandOf(parent) ?? '') ? parent : undefined;
  const npm = shell === undefined ? undefined : parentOf(shell);
  const timer = setInterval(() => {
    let gone: string | undefined;
    if (process.ppid !== parent) gone = `the process that started this one (pid ${parent}) is gone`;
    else if (shell !== undefined && npm !== undefined && parentOf(shell) !== npm) gone = `npm (pid ${npm}) is gone`;
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(gone);
  }, PARENT_POLL_MS);
  timer.unref();
}
