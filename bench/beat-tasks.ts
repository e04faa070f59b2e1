// The tasks module of the beat benchmark (bench/beat.bench.ts): one schedule, every second, of the no-op task, on
// the broker of FENNEL_BROKER_URL and the queue of BENCH_BEAT_QUEUE. Nothing consumes it: what is measured is when
// each fire is sent, not run.
import { Fennel } from 'fennel';

export const app = new Fennel();
export const noop = app.task('bench.noop', () => null);
app.schedule('bench.tick', { every: 1 }, noop, [], { queue: process.env['BENCH_BEAT_QUEUE'] ?? 'bench-beat' });
