// A child of bare.ts: loads the hot loop, says ready, draws the chunks it is sent, answers with the hits, and exits
// when its parent closes the channel (or goes away).

import { countChunk } from './montecarlo.ts';
import type { FromBareChild, ToBareChild } from './bare.ts';

const send = (message: FromBareChild): void => void process.send?.(message);

process.once('message', (message: ToBareChild) => {
  const start = performance.now();
  const counts = message.chunks.map((chunk): [number, number] => [chunk.index, countChunk(message.seed, chunk)]);
  send({ type: 'done', counts, computeMs: performance.now() - start });
});
process.once('disconnect', () => process.exit(0));
send({ type: 'ready' });
