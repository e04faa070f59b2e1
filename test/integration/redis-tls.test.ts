// rediss:// against a private redis-server with TLS (issue #18), on certificates this test makes with openssl: a CA,
// a server certificate for 127.0.0.1 and a client certificate. A real worker runs a task with the broker and the
// result backend both over TLS, verifying the server with ssl_ca_certs and presenting a client certificate; a
// server the client cannot verify, or a missing client certificate where the server asks for one, is a
// BrokerUnavailableError within connectTimeoutMs naming the cause; a bad parameter or an unreadable file is a
// ConfigError at construction.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BrokerUnavailableError, ConfigError, Fennel } from '../../src/index.ts';
import { startWorker, stopProcess, waitFor, type RunningWorker } from '../support/process.ts';
import { freePort, redisAnswers } from '../support/services.ts';
import { makeTempDir, type TempDir } from '../support/tmp.ts';

const TASKS = join(import.meta.dirname, 'fixtures/tasks.ts');

function hasTools(): string | false {
  if (spawnSync('openssl', ['version']).status !== 0) return 'openssl is not installed';
  const help = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (help.status !== 0) return 'redis-server is not installed';
  return false;
}
const missing = hasTools();
if (missing && process.env['CI'] === 'true') throw new Error(`redis-tls: ${missing} (CI needs it)`);

/** Runs openssl with these arguments in `dir`, failing the test with its output if it fails. */
function openssl(dir: string, args: string[]): void {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  assert.equal(run.status, 0, `openssl ${args.join(' ')}:\n${run.stderr}`);
}

/** A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate signed by it. */
function makeCertificates(dir: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=fennel-test-ca']);
  for (const who of ['server', 'client']) {
    openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=fennel-test-${who}`]);
  }
  // The server's name is the address clients dial: an IP subject alternative name.
  spawnSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1\\n" > server.ext'], { cwd: dir });
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext']);
  openssl(dir, ['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2']);
}

describe('rediss://: Redis over TLS', { skip: missing }, () => {
  let dir: TempDir;
  let server: ChildProcess;
  let port: number;
  const workers: RunningWorker[] = [];
  const apps: Fennel[] = [];
  const file = (name: string): string => dir.file(name);
  /** The URL of the TLS server, with these parameters. */
  const url = (params: Record<string, string>): string => `rediss://127.0.0.1:${port}/0?${new URLSearchParams(params).toString()}`;
  const trusted = (): Record<string, string> => ({ ssl_ca_certs: file('ca.crt'), ssl_certfile: file('client.crt'), ssl_keyfile: file('client.key') });

  before(async () => {
    dir = makeTempDir('fennel-redis-tls-');
    makeCertificates(dir.path);
    port = await freePort();
    // TLS only (no plain port), client certificates required.
    server = spawn(
      'redis-server',
      ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--tls-cert-file', file('server.crt'), '--tls-key-file', file('server.key'), '--tls-ca-cert-file', file('ca.crt'), '--tls-auth-clients', 'yes', '--dir', dir.path],
      { stdio: 'ignore' },
    );
    // A plain PING gets no answer from a TLS port; the probe below speaks TLS.
    await waitFor(async () => {
      const probe = new Fennel({ broker: url(trusted()), connectTimeoutMs: 500 });
      try {
        await probe.transport.depth('probe');
        return true;
      } catch {
        return false;
      } finally {
        await probe.close();
      }
    }, `redis-server with TLS on port ${port}`, 20_000);
  });
  after(async () => {
    for (const worker of workers) await stopProcess(worker);
    for (const app of apps) await app.close();
    server?.kill('SIGKILL');
    dir?.remove();
  });

  it('a worker and a producer run a task with the broker and the results over TLS, verifying the server and presenting a client certificate', async () => {
    const broker = url(trusted());
    workers.push(await startWorker(TASKS, broker, ['-P', 'async', '-c', '2'], { FENNEL_RESULT_BACKEND: broker }));
    const app = new Fennel({ broker });
    apps.push(app);
    assert.equal(await app.sendTask('test.add', [20, 22]).get({ timeoutMs: 30_000 }), 42);
    assert.equal(await redisAnswers(port, 500), false, 'the port speaks only TLS: a plain PING gets no answer');
  });

  const unreachable = async (broker: string, cause: RegExp): Promise<void> => {
    const app = new Fennel({ broker, connectTimeoutMs: 1_000 });
    apps.push(app);
    const error = await app.sendTask('test.add', [1, 1]).sent.then(
      () => assert.fail('sent over a TLS link that should not be'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BrokerUnavailableError, String(error));
    assert.match(error.message, /no connection within 1000 ms/);
    assert.match(error.message, cause);
  };

  it('a server certificate the client cannot verify (no ssl_ca_certs) is BrokerUnavailableError naming the cause', async () => {
    await unreachable(url({ ssl_certfile: file('client.crt'), ssl_keyfile: file('client.key') }), /self[- ]signed certificate|unable to (get|verify)/i);
  });

  it('no client certificate where the server asks for one is BrokerUnavailableError', async () => {
    // TLS 1.3 finishes the client's side of the handshake first: the server's refusal comes as an alert, or (if the
    // connection closes before the alert is read) as a reset.
    await unreachable(url({ ssl_ca_certs: file('ca.crt') }), /certificate required|ECONNRESET|socket hang up|Connection is closed/i);
  });

  it('ssl_cert_reqs=none skips verifying the server (redis-py’s CERT_NONE), and still connects', async () => {
    const app = new Fennel({ broker: url({ ssl_cert_reqs: 'none', ssl_certfile: file('client.crt'), ssl_keyfile: file('client.key') }) });
    apps.push(app);
    assert.equal(await app.transport.depth('nothing-here'), 0);
  });

  it('bad parameters and unreadable files are ConfigErrors at construction', () => {
    const config = (broker: string, pattern: RegExp): void => {
      assert.throws(() => new Fennel({ broker }), (e: unknown) => e instanceof ConfigError && pattern.test(e.message));
    };
    config(url({ ssl_ca_certs: join(dir.path, 'absent.crt') }), /ssl_ca_certs of .*cannot read .*absent\.crt \(ENOENT\)/);
    config(url({ ssl_cert_reqs: 'sometimes' }), /ssl_cert_reqs .* is 'sometimes': use required, optional or none/);
    config(url({ ssl_certfile: file('client.crt') }), /needs both ssl_certfile and ssl_keyfile/);
    config(url({ ssl_verify: 'yes' }), /unknown parameter 'ssl_verify'.*known: ssl_ca_certs/);
    config(`redis://127.0.0.1:${port}/0?ssl_ca_certs=${file('ca.crt')}`, /unknown parameter 'ssl_ca_certs'.*redis:\/\/ URLs take none/);
  });
});
