// One subscriber process of the channel benchmark (bench/channels.bench.ts): subscribes to one channel, counts the
// messages `{ seq, t }` it receives, and says so on stdout, one JSON line per event. Three kinds, the same loop:
//   fennel    a Fennel app on <url>: `app.channel(name).subscribe({ bufferSize })`, read with `for await`
//   ioredis   a bare ioredis connection: SUBSCRIBE <name>, JSON.parse of each message
//   amqplib   a bare amqplib channel: an exclusive, auto-deleted, server-named queue bound to the fanout exchange
//             <name> (transient, kept when unused, as Fennel declares its own), consumed with noAck, JSON.parse
//
//   node --import tsx bench/peers/channel-subscriber.ts <kind> <url> <name> <count> <bufferSize>
//
// Lines: {"event":"ready"} once subscribed on the broker; {"event":"warm"} when the warm-up's last message (seq -1)
// arrives; {"event":"done",…} when <count> timed messages (seq ≥ 0) have arrived, or when "stop" is written to stdin
// (then with what it has). Times are milliseconds since the epoch, `performance.timeOrigin + performance.now()`, the
// clock the driver starts its own from; `cpuUs` is this process's CPU time (user + system, µs) at "warm" and at
// "done", so the driver has what the timed messages cost it. Exits after "done".

// Each kind imports only its own client (import() below), so a process starts as fast as it can: ten of them start
// for each run of the ten-subscriber layout.

interface Message {
  seq: number;
  t: number;
}

const [kind, url, name, countText, bufferText] = process.argv.slice(2);
const count = Number(countText);
const bufferSize = Number(bufferText);
if (!kind || !url || !name || !Number.isInteger(count) || count < 1 || !Number.isInteger(bufferSize) || bufferSize < 1) {
  console.error('usage: channel-subscriber.ts <fennel|ioredis|amqplib> <url> <name> <count> <bufferSize>');
  process.exit(2);
}

const now = (): number => performance.timeOrigin + performance.now();
const cpu = (): number => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const emit = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

const seen = new Uint8Array(count);
let received = 0;
let duplicates = 0;
let outOfOrder = 0;
let highest = -1;
let firstAt = NaN;
let lastAt = NaN;
let finished = false;
let error: string | undefined;
let close: () => Promise<void> = async () => {};

function onMessage(message: Message): void {
  const { seq } = message;
  if (seq < 0) {
    if (seq === -1) emit({ event: 'warm', cpuUs: cpu() });
    return;
  }
  lastAt = now();
  if (received === 0) firstAt = lastAt;
  if (seq >= count || seen[seq]) {
    duplicates++;
    return;
  }
  seen[seq] = 1;
  received++;
  if (seq < highest) outOfOrder++;
  else highest = seq;
  if (received === count) void finish();
}

async function finish(): Promise<void> {
  if (finished) return;
  finished = true;
  emit({ event: 'done', received, duplicates, outOfOrder, firstAt, lastAt, cpuUs: cpu(), ...(error ? { error } : {}) });
  await close().catch(() => {});
  process.exit(0);
}

let stdin = '';
process.stdin.setEncoding('utf8').on('data', (chunk: string) => {
  stdin += chunk;
  if (stdin.includes('stop')) void finish();
});
// The driver gone (its pipe closed) is a stop too.
process.stdin.on('end', () => void finish());

if (kind === 'fennel') {
  const { Fennel } = await import('fennel');
  const app = new Fennel({ broker: url });
  const subscription = app.channel<Message>(name).subscribe({ bufferSize, overflow: 'error' });
  close = () => app.close();
  await subscription.ready;
  emit({ event: 'ready' });
  try {
    for await (const message of subscription) onMessage(message);
  } catch (caught) {
    error = String((caught as Error).message ?? caught); // ChannelOverflowError: reported with the count
    await finish();
  }
} else if (kind === 'ioredis') {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true });
  close = async () => void redis.disconnect();
  redis.on('message', (_channel: string, payload: string) => onMessage(JSON.parse(payload) as Message));
  await redis.connect();
  await redis.subscribe(name);
  emit({ event: 'ready' });
} else if (kind === 'amqplib') {
  const { connect } = await import('amqplib');
  const connection = await connect(url, { noDelay: true });
  close = () => connection.close();
  const channel = await connection.createChannel();
  await channel.assertExchange(name, 'fanout', { durable: false, autoDelete: false });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  await channel.bindQueue(queue, name, '');
  await channel.consume(queue, (message) => {
    if (message) onMessage(JSON.parse(message.content.toString('utf8')) as Message);
  }, { noAck: true });
  emit({ event: 'ready' });
} else {
  console.error(`unknown kind ${kind}`);
  process.exit(2);
}
