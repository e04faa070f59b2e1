// A helper script under test/conformance/helpers/ run as a real child process (tracked, so a test file that
// leaves one running is blamed for it), with its stdout read line by line and a line-based stdin to steer it.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { track } from '../../support/process.ts';
import { waitFor } from './wait.ts';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HELPERS = fileURLToPath(new URL('./', import.meta.url));

export class Child {
  readonly lines: string[] = [];
  private stderr = '';
  /** How it ended, once it has exited and its output has been read to the end. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;

  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => this.lines.push(line));
    proc.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    proc.stdin?.on('error', () => {}); // the child may be gone before it reads what it was sent
    // 'close', not 'exit': 'exit' can come before the last of stdout is read, and its last lines would be missed.
    this.exited = new Promise((resolve) =>
      proc.once('close', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  /** What the child printed to stderr so far (for failure messages). */
  get errors(): string {
    return this.stderr;
  }

  /** The rest of each stdout line that starts with `prefix`. */
  linesAfter(prefix: string): string[] {
    return this.lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
  }

  async waitForLine(prefix: string, timeoutMs = 30_000): Promise<string> {
    await waitFor(() => this.exit !== undefined || this.lines.some((l) => l.startsWith(prefix)), { timeoutMs, what: `a "${prefix}" line from pid ${this.proc.pid}` });
    const line = this.lines.find((l) => l.startsWith(prefix));
    if (line === undefined) throw new Error(`child exited (${JSON.stringify(this.exit)}) before printing "${prefix}"; stderr:\n${this.stderr}`);
    return line;
  }

  /** Writes one line to the child's stdin. */
  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.exit === undefined) this.proc.kill(signal);
    await this.exited;
  }
}

/** Starts `node test/conformance/helpers/<script> ...args` from the repository root, as the suites' children. */
export function spawnHelperProcess(script: string, args: string[]): Child {
  const proc = track(
    spawn(process.execPath, ['--conditions=development', '--import', 'tsx', `${HELPERS}${script}`, ...args], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
  return new Child(proc);
}
