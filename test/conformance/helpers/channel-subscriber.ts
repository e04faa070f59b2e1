// A channel subscriber in a process of its own, for the channel suite's cross-process case:
//   node --import tsx channel-subscriber.ts <broker url> <channel> <count>
// prints `ready` once its subscription is live on the broker, then `received <JSON of the values>` once it has
// read <count> messages, and exits 0 (closing its app). It gives up with exit code 2 after a minute.

import { Fennel } from '../../../src/index.ts';

const [url, name, countText] = process.argv.slice(2);
if (!url || !name || !countText) throw new Error('usage: channel-subscriber.ts <broker url> <channel> <count>');
const count = Number(countText);

setTimeout(() => {
  console.error('channel-subscriber: no messages within 60 s');
  process.exit(2);
}, 60_000).unref();

const app = new Fennel({ broker: url });
const subscription = app.channel<unknown>(name).subscribe();
await subscription.ready;
console.log('ready');
const received: unknown[] = [];
for await (const value of subscription) {
  received.push(value);
  if (received.length === count) break;
}
console.log(`received ${JSON.stringify(received)}`);
await app.close();
