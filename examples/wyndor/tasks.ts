// The Wyndor LP app's tasks. A worker process runs them (GLPK is CPU work: the process pool); the gateway
// exposes them over HTTP, with their argument schemas, so a bad model is a 400 before it reaches a worker.
//   npx fennel worker --app examples/wyndor/tasks.ts -E
//   npx fennel gateway --app examples/wyndor/tasks.ts --site examples/wyndor/public
import { z } from 'zod';
import { Fennel } from 'fennel';
import { lpSchema, solve, wyndor } from './model.ts';

export const app = new Fennel();

/** The Wyndor Glass problem for a profit of `p` per window. */
export const solveWyndor = app.task('wyndor.solve', (p: number) => solve(wyndor(p)), {
  expose: true,
  schema: z.tuple([z.number().finite().min(0).max(1e9)]),
});

/** Any LP or MIP in the JSON form of model.ts. */
export const solveLp = app.task('lp.solve', (model: unknown) => solve(lpSchema.parse(model)), {
  expose: true,
  schema: z.tuple([lpSchema]),
});
