// Requests and their replies on the hot paths of Fennel's NATS engines (a publish's PubAck, an ack's confirmation, a
// key read), over one wildcard inbox subscription per connection. Not a pull's messages: JetStream delivers those
// with their stream subject, so a pull has an inbox subscription of its own (jetstream.ts pullNoWait).
//
// Why not the client's nc.request(): it builds an Error for every request it ends (RequestOne.cancel rejects an
// already settled promise with a new RequestError, whose stack capture alone was 7% of a worker's CPU, profiled), and
// a timer and a deferred for each. Here a request is one map entry with a deadline; one timer sweeps the deadlines
// while any request is out, so a request that gets no reply fails within its timeout plus SWEEP_MS.
//
// Replies carry the server's status where it sends one: 503 "no responders" (nobody subscribes to the subject: no
// JetStream, or a stream with no leader) fails a single request with an error that isNoResponders() recognises (the
// client's own shape: RequestError caused by NoRespondersError); other statuses are the caller's to read.

import { createInbox, errors, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';

/** How often the deadlines of pending requests are checked. */
const SWEEP_MS = 100;

interface Pending {
  deadline: number;
  subject: string;
  onReply: (msg: Msg) => void;
  fail: (error: Error) => void;
}

export class Replies {
  private readonly prefix: string;
  private readonly pending = new Map<string, Pending>();
  private next = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closedError: Error | undefined;

  /** `nc`: the connection it sends on (fire-and-forget publishes go to it directly). */
  constructor(readonly nc: NatsConnection) {
    this.prefix = `${createInbox()}.`;
    nc.subscribe(`${this.prefix}*`, {
      callback: (error, msg) => {
        if (error) return this.failAll(error);
        const token = msg.subject.slice(this.prefix.length);
        const request = this.pending.get(token);
        if (!request) return; // timed out already
        this.pending.delete(token);
        request.onReply(msg);
      },
    });
    void nc.closed().then((error) => this.failAll((this.closedError = error ?? new errors.ClosedConnectionError())));
  }

  /** The first reply to `payload` sent to `subject`; rejects on no responders, and when none comes within `timeoutMs`. */
  request(subject: string, payload: Uint8Array | string, timeoutMs: number, headers?: MsgHdrs): Promise<Msg> {
    return new Promise<Msg>((resolve, reject) => {
      this.send(subject, payload, timeoutMs, headers, reject, (msg) => {
        // A status comes with headers and no data; a reply with data (a PubAck, a stored message) is not one.
        if (msg.data.length === 0 && msg.headers?.code === 503) reject(new errors.RequestError(`no responders: '${subject}'`, { cause: new errors.NoRespondersError(subject) }));
        else resolve(msg);
      });
    });
  }

  private send(subject: string, payload: Uint8Array | string, timeoutMs: number, headers: MsgHdrs | undefined, fail: (error: Error) => void, onReply: (msg: Msg) => void): void {
    if (this.closedError) return fail(this.closedError);
    const token = (this.next++).toString(36);
    this.pending.set(token, { deadline: Date.now() + timeoutMs, subject, onReply, fail });
    try {
      this.nc.publish(subject, payload, headers ? { reply: this.prefix + token, headers } : { reply: this.prefix + token });
    } catch (error) {
      this.pending.delete(token);
      return fail(error as Error);
    }
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, request] of this.pending) {
      if (request.deadline > now) continue;
      this.pending.delete(token);
      request.fail(new errors.TimeoutError({ cause: new Error(`no reply from ${request.subject}`) }));
    }
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private failAll(error: Error): void {
    const requests = [...this.pending.values()];
    this.pending.clear();
    for (const request of requests) request.fail(error);
  }
}
