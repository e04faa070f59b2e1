// Delayed delivery (countdown/eta) on plain RabbitMQ: no delayed-message plugin, and no far-future message
// held in a worker's memory. Binary delay levels, as NServiceBus does it: level k is a queue whose
// x-message-ttl is 2^k units (UNIT_MS each) and whose dead-letter exchange is level k-1's; the remaining
// delay travels in the routing key as LEVELS bits (most significant first), then the target queue's name:
//   "0.0.….1.0.1.celery"   = 5 units for queue celery
//   exchange fennel.delay.<k> (topic):  bit k = 1 → queue fennel.delay.<k>.<queue>  (binding "*…1*….<queue>")
//                                       bit k = 0 → exchange fennel.delay.<k-1>     (binding "*…0*….#")
//   exchange fennel.delay.deliver (topic) → the target queue                         (binding "*….<queue>")
// A publish enters at the top exchange; RabbitMQ walks it down the levels, holding it TTL 2^k units in each
// level whose bit is set, and finally routes it to the queue. Every level queue has one TTL, so it expires
// strictly in FIFO order at its head. The level queues are per target queue (only the levels a delay needs
// are declared), so the scheduled messages of a queue can be counted and purged without browsing them.
// Precision: the delay is rounded UP to whole units (never early), plus a few ms per hop (at most one hop per
// set bit). Longer than MAX_DELAY_MS goes the whole way and arrives early; the worker sees its eta is still
// ahead and defers it again.

export const UNIT_MS = 100;
export const LEVELS = 32;
/** The longest delay the levels hold in one pass: (2^32 - 1) × 100 ms ≈ 13.6 years. */
export const MAX_DELAY_MS = (2 ** LEVELS - 1) * UNIT_MS;
export const DELAY_PREFIX = 'fennel.delay.';
export const DELIVER_EXCHANGE = 'fennel.delay.deliver';

export function levelExchange(level: number): string {
  return `${DELAY_PREFIX}${level}`;
}

export function levelQueue(level: number, queue: string): string {
  return `${DELAY_PREFIX}${level}.${queue}`;
}

/** Where a level dead-letters to: the level below, or the delivery exchange after level 0. */
export function nextExchange(level: number): string {
  return level === 0 ? DELIVER_EXCHANGE : levelExchange(level - 1);
}

/** Delay in whole units, rounded up (never early), capped at what the levels can hold. */
export function delayUnits(delayMs: number): number {
  if (delayMs <= 0) return 0;
  return Math.min(Math.ceil(delayMs / UNIT_MS), 2 ** LEVELS - 1);
}

/** The highest level a delay passes through (its top bit); -1 for no delay. */
export function topLevel(units: number): number {
  return units <= 0 ? -1 : Math.floor(Math.log2(units));
}

/** The routing key of a delayed publish: LEVELS bit words, most significant first, then the queue. */
export function delayRoutingKey(units: number, queue: string): string {
  const bits: string[] = [];
  for (let level = LEVELS - 1; level >= 0; level--) bits.push(Math.floor(units / 2 ** level) % 2 === 1 ? '1' : '0');
  return `${bits.join('.')}.${queue}`;
}

/** A topic pattern with `word` at bit `level`'s position and `*` at the other bit positions, then `tail`. */
function bitPattern(level: number, word: string, tail: string): string {
  const words: string[] = [];
  for (let l = LEVELS - 1; l >= 0; l--) words.push(l === level ? word : '*');
  return `${words.join('.')}.${tail}`;
}

/** Binding of level `level`'s queue for `queue` to that level's exchange: bit set, this queue. */
export function levelQueuePattern(level: number, queue: string): string {
  return bitPattern(level, '1', queue);
}

/** Binding of exchange level-1 to exchange level: bit clear, any queue. */
export function passPattern(level: number): string {
  return bitPattern(level, '0', '#');
}

/** Binding of the target queue to the delivery exchange. */
export function deliverPattern(queue: string): string {
  return `${Array.from({ length: LEVELS }, () => '*').join('.')}.${queue}`;
}

/**
 * A queue name that topic patterns would read as wildcards cannot be routed through the levels exactly
 * (another queue's messages could match its bindings), so delayed publishes to it are refused.
 */
export function delayableQueue(queue: string): boolean {
  return !queue.split('.').some((word) => word === '*' || word === '#');
}
