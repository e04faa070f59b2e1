// The tasks module of the dependency-graph benchmark (bench/refs.bench.ts). Workers load it (`fennel worker --app
// bench/refs-tasks.ts`, broker from FENNEL_BROKER_URL); the scenarios call refsApp() for a producer on each run's
// database. The tasks do nothing but add, so that the values that come back check the whole graph (the root of the
// tree is the sum of its leaves) and what is measured is Fennel's cost per task and per dependency.
import { Fennel, type FennelOptions } from 'fennel';

export function refsApp(options: FennelOptions = {}) {
  const app = new Fennel(options);
  /** A leaf of the tree, a member of the fan-in: its own index. */
  const leaf = app.task('bench.leaf', (i: number) => i);
  /** An inner node of the tree, by references: `node.delay(left, right)`. */
  const node = app.task('bench.node', (left: number, right: number) => left + right);
  /**
   * The sum of its arguments, flattened: a chord callback (one argument, the list of the header's results) and the
   * fan-in by references (`sum.delay(...refs)`, one argument per input) are the same task.
   */
  const sum = app.task('bench.sum', (...xs: Array<number | number[]>) => xs.flat().reduce((s, x) => s + x, 0));
  /** A level of the tree built level by level from the producer: the chord's callback hands back its results. */
  const list = app.task('bench.list', (xs: number[]) => xs);
  return { app, leaf, node, sum, list };
}

export const { app, leaf, node, sum, list } = refsApp();
