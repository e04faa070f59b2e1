// Linear programs in a JSON form people can write by hand, checked with zod and solved with GLPK (glpk.js).
// The Wyndor Glass problem (Hillier & Lieberman) is one such model: maximise 300·doors + p·windows subject to
// door fabrication doors ≤ 4, window fabrication 2·windows ≤ 12, assembly 3·doors + 2·windows ≤ 18.
//
//   { "sense": "max", "objective": { "doors": 300, "windows": 500 },
//     "constraints": [ { "name": "assembly", "coefs": { "doors": 3, "windows": 2 }, "max": 18 }, … ],
//     "bounds": { "doors": { "min": 0, "max": 10 } }, "integer": ["doors"] }
//
// Variables are non-negative unless `bounds` says otherwise. Sizes are capped so one request cannot hold a
// worker for long, and GLPK gets a time limit too.

import GLPK, { type LP } from 'glpk.js/node';
import { z } from 'zod';

const MAX_VARIABLES = 200;
const MAX_CONSTRAINTS = 200;
const TIME_LIMIT_SEC = 5;

const name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'a name is a letter or _, then up to 63 letters, digits or _');
const coef = z.number().finite();
const coefs = z.record(name, coef).refine((c) => Object.keys(c).length > 0, 'needs at least one variable');
const range = z
  .object({ min: coef.optional(), max: coef.optional(), equal: coef.optional() })
  .strict()
  .refine((r) => r.equal === undefined || (r.min === undefined && r.max === undefined), 'give either equal, or min and/or max')
  .refine((r) => r.min === undefined || r.max === undefined || r.min <= r.max, 'min is greater than max');

export const lpSchema = z
  .object({
    sense: z.enum(['max', 'min']),
    objective: coefs,
    constraints: z
      .array(z.object({ name, coefs }).and(range).refine((c) => c.min !== undefined || c.max !== undefined || c.equal !== undefined, 'a constraint needs min, max or equal'))
      .max(MAX_CONSTRAINTS),
    bounds: z.record(name, range).optional(),
    integer: z.array(name).optional(),
  })
  .strict()
  .superRefine((lp, ctx) => {
    const names = new Set(lp.constraints.map((c) => c.name));
    if (names.size !== lp.constraints.length) ctx.addIssue({ code: 'custom', path: ['constraints'], message: 'constraint names must be unique' });
    if (variablesOf(lp).length > MAX_VARIABLES) ctx.addIssue({ code: 'custom', path: ['objective'], message: `at most ${MAX_VARIABLES} variables` });
  });

export type LinearProgram = z.infer<typeof lpSchema>;

export interface ConstraintUsage {
  name: string;
  /** The left-hand side at the solution (how much of the resource is used). */
  usage: number;
  min?: number;
  max?: number;
  /** Room left to the nearest bound (0: binding). */
  slack?: number;
}

export interface Solution {
  status: 'optimal' | 'infeasible' | 'unbounded' | 'no solution found';
  /** What the status means, in a sentence for the page. */
  message: string;
  objective: number | null;
  variables: Record<string, number>;
  constraints: ConstraintUsage[];
  /** Time GLPK took, in milliseconds. */
  solveMs: number;
}

/** The Wyndor Glass model with `p` dollars of profit per window. */
export function wyndor(p: number): LinearProgram {
  return {
    sense: 'max',
    objective: { doors: 300, windows: p },
    constraints: [
      { name: 'door_fab', coefs: { doors: 1 }, max: 4 },
      { name: 'window_fab', coefs: { windows: 2 }, max: 12 },
      { name: 'assembly', coefs: { doors: 3, windows: 2 }, max: 18 },
    ],
  };
}

function variablesOf(lp: Pick<LinearProgram, 'objective' | 'constraints' | 'bounds' | 'integer'>): string[] {
  const all = new Set(Object.keys(lp.objective));
  for (const c of lp.constraints) for (const v of Object.keys(c.coefs)) all.add(v);
  for (const v of Object.keys(lp.bounds ?? {})) all.add(v);
  for (const v of lp.integer ?? []) all.add(v);
  return [...all];
}

// One GLPK instance per process (loading the WebAssembly takes a few ms; solving takes well under one).
let glpkReady: ReturnType<typeof GLPK> | undefined;

type Glpk = Awaited<ReturnType<typeof GLPK>>;

function bnds(glpk: Glpk, r: { min?: number | undefined; max?: number | undefined; equal?: number | undefined }, defaultMin: number | null): { type: number; lb: number; ub: number } {
  if (r.equal !== undefined) return { type: glpk.GLP_FX, lb: r.equal, ub: r.equal };
  const lb = r.min ?? defaultMin;
  const ub = r.max;
  if (lb !== null && lb !== undefined && ub !== undefined) return lb === ub ? { type: glpk.GLP_FX, lb, ub } : { type: glpk.GLP_DB, lb, ub };
  if (lb !== null && lb !== undefined) return { type: glpk.GLP_LO, lb, ub: 0 };
  if (ub !== undefined) return { type: glpk.GLP_UP, lb: 0, ub };
  return { type: glpk.GLP_FR, lb: 0, ub: 0 };
}

function toGlpk(glpk: Glpk, lp: LinearProgram, integers: boolean): LP {
  const terms = (c: Record<string, number>): Array<{ name: string; coef: number }> => Object.entries(c).map(([n, v]) => ({ name: n, coef: v }));
  return {
    name: 'lp',
    objective: { direction: lp.sense === 'max' ? glpk.GLP_MAX : glpk.GLP_MIN, name: 'objective', vars: terms(lp.objective) },
    subjectTo: lp.constraints.map((c) => ({ name: c.name, vars: terms(c.coefs), bnds: bnds(glpk, c, null) })),
    bounds: variablesOf(lp).map((v) => ({ name: v, ...bnds(glpk, lp.bounds?.[v] ?? {}, 0) })),
    ...(integers && lp.integer?.length ? { generals: lp.integer } : {}),
  };
}

/** Solves a model (validate it with lpSchema first). Infeasible and unbounded models are results, not errors. */
export async function solve(lp: LinearProgram): Promise<Solution> {
  const glpk = await (glpkReady ??= GLPK());
  const started = performance.now();
  // The LP (or a MIP's relaxation) without presolve, so GLPK tells infeasible from unbounded rather than "undefined".
  const relaxed = glpk.solve(toGlpk(glpk, lp, false), { msglev: glpk.GLP_MSG_OFF, presol: false, rows: true, tmlim: TIME_LIMIT_SEC });
  let outcome = relaxed.result;
  const isMip = (lp.integer?.length ?? 0) > 0;
  if (isMip && outcome.status === glpk.GLP_OPT) {
    outcome = glpk.solve(toGlpk(glpk, lp, true), { msglev: glpk.GLP_MSG_OFF, presol: true, rows: true, tmlim: TIME_LIMIT_SEC }).result;
  }
  const solveMs = Math.round((performance.now() - started) * 1000) / 1000;
  const empty = { objective: null, variables: {}, constraints: [], solveMs };
  switch (outcome.status) {
    case glpk.GLP_OPT:
      return { status: 'optimal', message: isMip ? 'optimal integer solution' : 'optimal solution', objective: outcome.z, variables: outcome.vars, constraints: usage(lp, outcome.rows ?? {}), solveMs };
    case glpk.GLP_INFEAS:
    case glpk.GLP_NOFEAS:
      return { status: 'infeasible', message: isMip && relaxed.result.status === glpk.GLP_OPT ? 'no integer point satisfies every constraint' : 'no point satisfies every constraint', ...empty };
    case glpk.GLP_UNBND:
      return { status: 'unbounded', message: isMip ? 'the relaxation is unbounded: the objective can grow without limit (or there is no integer solution)' : 'the objective can grow without limit: a constraint is missing', ...empty };
    default:
      return { status: 'no solution found', message: `GLPK stopped without a solution (status ${outcome.status}; time limit ${TIME_LIMIT_SEC} s)`, ...empty };
  }
}

function usage(lp: LinearProgram, rows: Record<string, number>): ConstraintUsage[] {
  return lp.constraints.map((c) => {
    const used = rows[c.name] ?? 0;
    const min = c.equal ?? c.min;
    const max = c.equal ?? c.max;
    const room = [max !== undefined ? max - used : Infinity, min !== undefined ? used - min : Infinity];
    const slack = Math.min(...room);
    return { name: c.name, usage: used, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}), ...(Number.isFinite(slack) ? { slack: Math.round(slack * 1e9) / 1e9 } : {}) };
  });
}
