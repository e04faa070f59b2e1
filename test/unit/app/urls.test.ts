// Broker and backend URLs are checked part by part when the app is made (src/app/config.ts with each engine's
// parser: clients/redis/url.ts, clients/amqp/url.ts, clients/sqlite-file.ts, util/url.ts): a wrong
// scheme, host, port, database, vhost or query parameter is a ConfigError that names the setting it came from,
// the part, and what is accepted; and a password never appears in a message.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../../src/app/config.ts';
import { ConfigError, Fennel } from '../../../src/index.ts';
import { parseAmqpUrl } from '../../../src/clients/amqp/url.ts';
import { parseRedisUrl } from '../../../src/clients/redis/url.ts';
import { createTransport } from '../../../src/transports/index.ts';
import { createBackend } from '../../../src/backends/index.ts';
import { maskUrl } from '../../../src/util/url.ts';

/** Asserts that `fn` throws a ConfigError whose message matches every pattern. */
function refused(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    assert.equal(e.code, 'FENNEL_CONFIG');
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

/** resolveConfig with only the given environment (none of the test process's). */
function config(options: Parameters<typeof resolveConfig>[0], env: NodeJS.ProcessEnv = {}): ReturnType<typeof resolveConfig> {
  return resolveConfig(options, env);
}

describe('a broker URL with an unknown scheme', () => {
  it('names the environment variable it came from and the broker, not the result backend', () => {
    refused(() => config({}, { FENNEL_BROKER_URL: 'bogus://x' }), /^environment variable FENNEL_BROKER_URL is invalid: /, /no transport for bogus:\/\/x/, /a broker URL starts with one of sqlite:\/\/, redis:\/\/, rediss:\/\/, amqp:\/\/, amqps:\/\/, memory:\/\//);
  });

  it("names the option 'broker' when it was given in code", () => {
    refused(() => config({ broker: 'bogus://x' }), /^option 'broker' is invalid: no transport for bogus:\/\/x/);
  });

  it('is refused when the app is made, not at its first send', () => {
    refused(() => new Fennel({ broker: 'carrier-pigeon://coop' }), /option 'broker' is invalid: no transport for carrier-pigeon:\/\/coop/);
  });

  it('says so when an rpc:// URL is given as the broker', () => {
    refused(() => config({ broker: 'rpc://' }), /rpc:\/\/ is a result backend, not a broker/);
  });

  it('refuses a value that is not a URL at all', () => {
    refused(() => config({ broker: 'not a url' }), /^option 'broker' is invalid: "not a url" is not a URL/);
  });
});

describe('a result backend URL', () => {
  it('with an unknown scheme names FENNEL_RESULT_BACKEND', () => {
    refused(() => config({}, { FENNEL_BROKER_URL: 'memory://', FENNEL_RESULT_BACKEND: 'mongodb://h/x' }), /^environment variable FENNEL_RESULT_BACKEND is invalid: no result backend for mongodb:\/\/h\/x/, /rpc:\/\//);
  });

  it('rpc:// with a broker that is not amqp:// is refused when the app is made', () => {
    refused(() => config({ broker: 'redis://127.0.0.1:6379/0', backend: 'rpc://' }), /^option 'backend' is invalid: .*needs an amqp:\/\/ broker, not redis:\/\/127\.0\.0\.1:6379\/0/);
  });

  it('rpc:// takes nothing after it', () => {
    refused(() => config({ broker: 'amqp://h/', backend: 'rpc://h/x' }), /rpc:\/\/ takes no host, path or parameters/);
    assert.equal(config({ broker: 'amqp://h/', backend: 'rpc://' }).backend, 'rpc://');
  });

  it('defaults to the broker URL, which is checked once, as the broker', () => {
    assert.equal(config({ broker: 'redis://h:6380/3' }).backend, 'redis://h:6380/3');
  });
});

describe('Redis URL parts', () => {
  it('reads host, port, database, credentials and TLS', () => {
    assert.deepEqual(parseRedisUrl('rediss://user:p%40ss@cache.example:6380/4'), { tls: true, tlsOptions: { rejectUnauthorized: true }, host: 'cache.example', port: 6380, db: 4, username: 'user', password: 'p@ss', safeUrl: 'rediss://user:***@cache.example:6380/4' });
    assert.deepEqual(parseRedisUrl('redis://'), { tls: false, host: 'localhost', port: 6379, db: 0, username: undefined, password: undefined, safeUrl: 'redis://' });
    assert.equal(parseRedisUrl('redis://[::1]:7000/').host, '::1');
  });

  for (const [url, pattern] of [
    ['redis://h:99999/0', /the port '99999' of redis:\/\/h:99999\/0 is not a port: use a whole number from 1 to 65535/],
    ['redis://h:0/0', /the port '0' .* is not a port/],
    ['redis://h:63x9/0', /the port '63x9' .* is not a port/],
    ['redis://h/abc', /the database 'abc' of redis:\/\/h\/abc is not a database number: end the URL with \/0, \/1/],
    ['redis://h/1/2', /the database '1\/2' .* is not a database number/],
    ['redis://h/-1', /the database '-1' .* is not a database number/],
    ['redis://h/0?db=3', /unknown parameter 'db' in redis:\/\/h\/0\?db=3; redis:\/\/ URLs take none/],
    ['redis://h:1:2/0', /the host of .* has more than one ':'/],
    ['redis://:pa#ss@h/0', /has a '#', which ends a URL there; write a '#' in a password as %23/],
  ] as const) {
    it(`refuses ${url}`, () => {
      refused(() => parseRedisUrl(url), pattern);
      // The same check, and the same words, when the URL is an app's broker, with the setting named.
      refused(() => config({ broker: url }), /^option 'broker' is invalid: /, pattern);
    });
  }
});

describe('AMQP URL parts', () => {
  it("reads the vhost as one segment, '/' written %2F", () => {
    assert.equal(parseAmqpUrl('amqp://guest:guest@h:5672/%2F').safeUrl, 'amqp://guest:***@h:5672/%2F');
    assert.equal(parseAmqpUrl('amqp://h/').connectUrl, 'amqp://h/');
  });

  for (const [url, pattern] of [
    ['amqp://h:70000/', /the port '70000' of amqp:\/\/h:70000\/ is not a port/],
    ['amqp://h/a/b', /the virtual host 'a\/b' of amqp:\/\/h\/a\/b has a '\/': the vhost is one path segment, so write a '\/' inside it as %2F/],
    ['amqp://h/%zz', /the virtual host '%zz' .* malformed %-escape/],
    ['amqp://h/?maxPriorty=10', /unknown parameter 'maxPriorty' .*; known: queueType, maxPriority, frameMax/],
    ['amqp://h/?queueType=lazy', /queueType=lazy in the broker URL: use classic or quorum/],
  ] as const) {
    it(`refuses ${url}`, () => {
      refused(() => parseAmqpUrl(url), pattern);
      refused(() => config({ broker: url }), /^option 'broker' is invalid: /, pattern);
    });
  }
});

describe('SQLite URL parts', () => {
  it('refuses a query parameter instead of ignoring it', () => {
    refused(() => config({ broker: 'sqlite:///tmp/x.db?mode=ro' }), /^option 'broker' is invalid: unknown parameter 'mode' in sqlite:\/\/\/tmp\/x\.db\?mode=ro; sqlite:\/\/ URLs take none/);
  });
});

describe('engines check their URL when made directly', () => {
  it('createTransport and createBackend refuse a bad part with the same ConfigError', () => {
    refused(() => createTransport('redis://h/x', { visibilityTimeoutSec: 30, pollIntervalMs: 250 }), /the database 'x' of redis:\/\/h\/x/);
    refused(() => createBackend('redis://h:0/1', { pollIntervalMs: 250, resultExpiresSec: 60 }), /the port '0'/);
  });
});

describe('passwords in messages', () => {
  it('maskUrl hides the password and leaves the rest as written', () => {
    assert.equal(maskUrl('redis://:secret@h:6379/0'), 'redis://:***@h:6379/0');
    assert.equal(maskUrl('amqp://user:s3cr@t@h/vh?heartbeat=5'), 'amqp://user:***@h/vh?heartbeat=5');
    assert.equal(maskUrl('redis://user@h/0'), 'redis://user@h/0');
    assert.equal(maskUrl('sqlite:///var/lib/a:b@c.db'), 'sqlite:///var/lib/a:b@c.db');
    assert.equal(maskUrl('not a url'), 'not a url');
  });

  it('never shows a password in a URL error', () => {
    for (const url of ['redis://:secret@h:99999/0', 'amqp://u:secret@h/a/b', 'redis://:secret@h/0?x=1', 'bogus://u:secret@h']) {
      assert.throws(
        () => config({ broker: url }),
        (e: unknown) => e instanceof ConfigError && !e.message.includes('secret') && e.message.includes(':***@'),
        url,
      );
    }
  });
});

describe('connectTimeoutMs', () => {
  it('defaults to 5000 and is read from FENNEL_CONNECT_TIMEOUT_MS', () => {
    assert.equal(config({ broker: 'memory://' }).connectTimeoutMs, 5000);
    assert.equal(config({ broker: 'memory://' }, { FENNEL_CONNECT_TIMEOUT_MS: '250' }).connectTimeoutMs, 250);
    assert.equal(config({ broker: 'memory://', connectTimeoutMs: 100 }, { FENNEL_CONNECT_TIMEOUT_MS: '250' }).connectTimeoutMs, 100);
  });

  it('refuses a value that is not a positive whole number of milliseconds', () => {
    refused(() => config({ broker: 'memory://' }, { FENNEL_CONNECT_TIMEOUT_MS: 'soon' }), /^environment variable FENNEL_CONNECT_TIMEOUT_MS is invalid/);
    refused(() => config({ broker: 'memory://', connectTimeoutMs: 0 }), /^option 'connectTimeoutMs' is invalid/);
  });
});
