// Every NATS connection Fennel opens (the transport's, the result backend's, the event bus's, …) is a NatsLink: the
// official client (@nats-io/transport-node), connected on first use, reconnecting for ever once it has connected
// (the client queues what is published meanwhile), and its JetStream and key-value handles made once.
//
// The first connection is bounded by connectTimeoutMs: a server that is not there is a BrokerUnavailableError naming
// the URL (password masked) and the cause, never a hang. A JetStream request (a publish's ack, a fetch, a key read)
// is bounded by the same time, so a cluster that lost its quorum fails a call within the bound instead of stalling it.

import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { BrokerUnavailableError, ClosedError } from '../../errors.ts';
import { Replies } from './requests.ts';
import { parseNatsUrl, type NatsUrl } from './url.ts';

export interface NatsHandles {
  nc: NatsConnection;
  /** Requests on the hot paths (requests.ts). */
  replies: Replies;
  /** How long a request waits for its reply (the link's connectTimeoutMs). */
  timeoutMs: number;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
}

export class NatsLink {
  readonly url: NatsUrl;
  private connecting: Promise<NatsConnection> | undefined;
  private jetstreamHandles: Promise<NatsHandles> | undefined;
  private closed = false;

  constructor(
    url: string,
    private readonly options: { connectTimeoutMs: number; name: string },
  ) {
    this.url = parseNatsUrl(url);
  }

  /** The connection, made on first use (core NATS: events, channels, the mailbox); BrokerUnavailableError if no server answers. */
  connection(): Promise<NatsConnection> {
    if (this.closed) return Promise.reject(new ClosedError(`the NATS connection to ${this.url.safeUrl}`));
    if (!this.connecting) {
      this.connecting = this.connect();
      // A failed first connection is tried again by the next call, not remembered.
      this.connecting.catch(() => (this.connecting = undefined));
    }
    return this.connecting;
  }

  /**
   * The connection and its JetStream handles (the transport, the result backend). A server without JetStream is a
   * BrokerUnavailableError that says so; the connection stays open for core users, and is asked again next time.
   */
  handles(): Promise<NatsHandles> {
    if (!this.jetstreamHandles) {
      this.jetstreamHandles = this.withJetStream();
      this.jetstreamHandles.catch(() => (this.jetstreamHandles = undefined));
    }
    return this.jetstreamHandles;
  }

  private async withJetStream(): Promise<NatsHandles> {
    const nc = await this.connection();
    const { connectTimeoutMs } = this.options;
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc, { timeout: connectTimeoutMs });
    } catch (error) {
      const why = (error as Error)?.message ?? String(error);
      throw new BrokerUnavailableError(this.url.safeUrl, `JetStream does not answer (${why}): start nats-server with -js, or check the account's JetStream limits`, { cause: error });
    }
    const js = jetstream(nc, { timeout: connectTimeoutMs });
    return { nc, replies: new Replies(nc), timeoutMs: connectTimeoutMs, js, jsm, kvm: new Kvm(js) };
  }

  private async connect(): Promise<NatsConnection> {
    const { connectTimeoutMs, name } = this.options;
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: this.url.servers,
        ...(this.url.user !== undefined ? { user: this.url.user } : {}),
        ...(this.url.pass !== undefined ? { pass: this.url.pass } : {}),
        name,
        timeout: connectTimeoutMs,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        // The client learns the cluster's other nodes from the server it reached, and fails over to them.
        ignoreClusterUpdates: false,
        // Without it the client builds a stack trace for every request in case it fails: a fifth of a worker's CPU
        // (profiled); Fennel's errors name the URL and the operation instead.
        noAsyncTraces: true,
      });
    } catch (error) {
      throw new BrokerUnavailableError(this.url.safeUrl, (error as Error)?.message ?? String(error), { cause: error });
    }
    if (this.closed) {
      await nc.close();
      throw new ClosedError(`the NATS connection to ${this.url.safeUrl}`);
    }
    return nc;
  }

  async close(): Promise<void> {
    this.closed = true;
    const connecting = this.connecting;
    this.connecting = undefined;
    this.jetstreamHandles = undefined;
    const nc = await connecting?.catch(() => undefined);
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }
}
