// Lua scripts with named KEYS and ARGV. Each script's header lists its KEYS and ARGV by position; its definition
// here names them in the same order, so a call site passes objects (`{ unacked: …, leases: … }`) and the compiler
// checks that every key and argument is there — a swapped pair of positional strings is no longer a silent bug.
// A script may end with a variable number of keys (`restKeys`) or arguments (`restArgs`), passed as one array.
// ioredis registers each script once per connection (`defineCommand`) and sends EVALSHA, falling back to EVAL
// after a Redis restart has dropped the script cache.

import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

type Arg = string | number;

/** An object with one value per name, plus the array of the rest under its own name when there is one. */
type Named<Names extends readonly string[], Rest extends string, V> = { readonly [N in Names[number]]: V } & { readonly [R in Rest]: readonly V[] };

export interface ScriptSpec<K extends readonly string[], KR extends string, A extends readonly string[], AR extends string> {
  /** KEYS[1..], in the header's order. */
  keys: K;
  /** The name of KEYS[#keys + 1..], a variable number of keys. */
  restKeys?: KR;
  /** ARGV[1..], in the header's order. */
  args: A;
  /** The name of ARGV[#args + 1..]. */
  restArgs?: AR;
}

export class LuaScript<K extends readonly string[], KR extends string, A extends readonly string[], AR extends string> {
  private readonly command: string;
  private readonly source: string;

  constructor(
    /** The script's name (its file name without `.lua`). */
    readonly name: string,
    file: URL,
    private readonly spec: ScriptSpec<K, KR, A, AR>,
  ) {
    this.command = `fennel_${name}`;
    this.source = readFileSync(file, 'utf8');
  }

  /** Registers the script on a connection; `run` on that connection needs it. */
  install(client: Redis): void {
    client.defineCommand(this.command, { lua: this.source });
  }

  /** Runs the script with its keys and arguments by name. */
  run(client: Redis, keys: Named<K, KR, string>, args: Named<A, AR, Arg>): Promise<unknown> {
    const keyList: string[] = this.spec.keys.map((k) => (keys as Record<string, string>)[k]!);
    if (this.spec.restKeys !== undefined) keyList.push(...(keys as Record<string, readonly string[]>)[this.spec.restKeys]!);
    const argList: Arg[] = this.spec.args.map((a) => (args as Record<string, Arg>)[a]!);
    if (this.spec.restArgs !== undefined) argList.push(...(args as Record<string, readonly Arg[]>)[this.spec.restArgs]!);
    const fn = (client as unknown as Record<string, (...a: Arg[]) => Promise<unknown>>)[this.command];
    if (!fn) throw new Error(`script ${this.name} is not installed on this connection`);
    return fn.call(client, keyList.length, ...keyList, ...argList);
  }
}

/**
 * Defines a script from a `.lua` file. Names are given as literal arrays, e.g.
 * `defineScript('ack', url, { keys: ['unacked', 'unackedIndex', 'leases'], restKeys: 'dedupe', args: [], restArgs: 'tags' })`.
 */
export function defineScript<const K extends readonly string[], const A extends readonly string[], const KR extends string = never, const AR extends string = never>(
  name: string,
  file: URL,
  spec: ScriptSpec<K, KR, A, AR>,
): LuaScript<K, KR, A, AR> {
  return new LuaScript(name, file, spec);
}
