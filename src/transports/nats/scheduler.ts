// Delayed delivery on JetStream without scheduled messages (nats-server 2.9 has none; 2.12's are not used, so
// that every 2.9+ server works): a message with a countdown or eta is published to `p.s.<queue>.…` with its due
// time in the header Fennel-Due, where only the `_scheduler` consumer sees it. Every consuming transport (a worker)
// runs one Scheduler on that consumer, and the server shares its messages among them:
//   - a message not due yet is given back with "-NAK {delay}": the server keeps it pending and hands it out again
//     when the delay has passed, so nothing polls and nothing is held in a worker's memory;
//   - a due message is published to its queue's ready subject `p.q.<queue>.…` (with the message id `s<stream
//     seq>`, so a scheduler that dies between the publish and the ack, and the next one that publishes it again
//     within the duplicate window, make one message, not two), then acked, and idle consumers of the queue woken.
// Never early: a message is published only once Date.now() has reached its due time; late by the time the
// server's redelivery timer and one publish take (milliseconds), or, when the scheduler holding it dies, by up to
// the scheduler consumer's ack wait (SCHEDULER_ACK_WAIT_MS). With no worker running, due messages wait where they
// are and move when the first worker starts.

import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { DUE_HEADER, SCHEDULER } from './layout.ts';

/** The ack wait of the `_scheduler` consumer: a scheduler acts on a message at once, so this only bounds a dead one's hold. */
export const SCHEDULER_ACK_WAIT_MS = 10_000;
/** Messages one scheduler asks for at a time. */
const BATCH = 100;

export interface SchedulerHost {
  readonly stream: string;
  jetstream(): Promise<JetStreamClient>;
  /** Publishes a due message to its queue (idempotent for one stream sequence) and wakes the queue's consumers. */
  promote(scheduledSubject: string, payload: Uint8Array, streamSeq: number): Promise<void>;
}

export class Scheduler {
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private endPause: (() => void) | undefined;
  private readonly done: Promise<void>;

  constructor(private readonly host: SchedulerHost) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        const js = await this.host.jetstream();
        const consumer = await js.consumers.get(this.host.stream, SCHEDULER);
        const messages = await consumer.consume({ max_messages: BATCH });
        this.messages = messages;
        if (this.stopped) messages.stop();
        for await (const m of messages) {
          failures = 0;
          await this.handle(m);
        }
      } catch {
        // The server is away or the consumer is not there yet: look again, backing off to 5 s.
        failures++;
      }
      if (!this.stopped) await this.pause(Math.min(100 * 2 ** failures, 5_000));
    }
  }

  /** A wait that stop() ends at once. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.endPause?.(), ms);
      this.endPause = () => {
        clearTimeout(timer);
        this.endPause = undefined;
        resolve();
      };
    });
  }

  private async handle(m: JsMsg): Promise<void> {
    const due = Number(m.headers?.get(DUE_HEADER) ?? 0) || 0;
    const wait = due - Date.now();
    if (wait > 0) {
      m.nak(wait);
      return;
    }
    try {
      await this.host.promote(m.subject, m.data, m.seq);
      m.ack();
    } catch {
      m.nak(1_000); // the queue could not take it now: once more in a second
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.messages?.stop();
    this.endPause?.();
    await this.done;
  }
}
