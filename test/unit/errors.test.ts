// src/errors.ts, its public exports and docs/errors.md must agree: every code maps to one class whose `code`
// and `name` are what the docs say, every class is a FennelError, and the docs mention every code and class.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as errors from '../../src/errors.ts';
import * as publicSurface from '../../src/index.ts';

const { ERROR_CODES, FennelError } = errors;

type ErrorClass = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** One instance of each class, built with plausible arguments (the constructors differ). */
function sample(cls: ErrorClass): Error {
  const make = cls as unknown as new (...args: unknown[]) => Error;
  switch (cls.name) {
    case 'PayloadTooLargeError':
      return new make(20, 10);
    case 'TimeoutError':
      return new make('0000', 1000, 'math.add');
    case 'RemoteTaskError':
      return new make('0000', 'ValueError', 'boom', null, 'builtins', 'FAILURE');
    case 'BrokerUnavailableError':
      return new make('sqlite://x.db', 'locked');
    case 'Retry':
      return new make(5);
    default:
      return new make('something went wrong');
  }
}

const entries = Object.entries(ERROR_CODES);
/** Every class exported from src/errors.ts (functions whose prototype is an Error's). */
const exportedClasses = Object.values(errors).filter((v): v is ErrorClass => typeof v === 'function' && v.prototype instanceof Error);

describe('ERROR_CODES', () => {
  it('maps each code to a distinct class', () => {
    assert.ok(entries.length > 0);
    assert.equal(new Set(Object.values(ERROR_CODES)).size, entries.length);
  });

  it('lists every error class that src/errors.ts exports', () => {
    const listed = new Set<unknown>(Object.values(ERROR_CODES));
    for (const cls of exportedClasses) assert.ok(listed.has(cls), `${cls.name} is exported but missing from ERROR_CODES`);
    assert.ok(listed.has(FennelError));
  });

  it('uses the FENNEL_ prefix for every code', () => {
    for (const [code] of entries) assert.match(code, /^FENNEL_[A-Z_]+$/);
  });
});

describe('each error class', () => {
  for (const [code, cls] of entries) {
    it(`${cls.name} has code ${code}, name ${cls.name}, and is a FennelError`, () => {
      const error = sample(cls);
      assert.equal((error as { code?: unknown }).code, code);
      assert.equal(error.name, cls.name, 'name must be set explicitly, so it survives minification and crosses the wire');
      assert.ok(error instanceof FennelError);
      assert.ok(error instanceof Error);
      assert.ok(error.message.length > 0);
    });

    it(`${cls.name} is exported from the public surface (src/index.ts)`, () => {
      assert.equal((publicSurface as Record<string, unknown>)[cls.name], cls);
    });
  }

  it('keeps the cause it is given', () => {
    const cause = new Error('root');
    assert.equal(new errors.ConfigError('bad', { cause }).cause, cause);
    assert.equal(new errors.BrokerUnavailableError('sqlite://x.db', 'locked', { cause }).cause, cause);
  });
});

describe('docs/errors.md', () => {
  const docs = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

  it('mentions every code and every class', () => {
    for (const [code, cls] of entries) {
      assert.ok(docs.includes(`\`${code}\``), `docs/errors.md does not mention \`${code}\``);
      assert.ok(docs.includes(`\`${cls.name}\``), `docs/errors.md does not mention \`${cls.name}\``);
    }
  });

  it('pairs each code with its class in the same table row', () => {
    const rows = docs.split('\n').filter((line) => line.startsWith('|'));
    for (const [code, cls] of entries) {
      const row = rows.find((line) => line.includes(`\`${code}\``));
      assert.ok(row, `no table row for ${code}`);
      assert.ok(row.includes(`\`${cls.name}\``), `the row for ${code} does not name ${cls.name}`);
    }
  });

  it('has no table row for a code that does not exist', () => {
    // The first cell of a row is the code; environment variables (FENNEL_BROKER_URL …) may appear elsewhere.
    const documented = docs.split('\n').flatMap((line) => /^\|\s*`(FENNEL_[A-Z_]+)`/.exec(line)?.[1] ?? []);
    for (const code of documented) assert.ok(code in ERROR_CODES, `docs/errors.md mentions ${code}, which src/errors.ts does not define`);
  });
});
