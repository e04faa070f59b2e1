// The schedules (GET /api/schedules): what `fennel schedules --json` prints, for the gateway's app: every
// schedule with its last and next fire, and which beat leads. Read from the result backend's engine (the lease
// and the beat's state records) on each request, so it is the same whichever process asks.
// A backend that cannot hold a beat's state (rpc://) is not an error of the request: no beat can run on it, so
// the answer is no leader and no schedules, with the reason when the app registers schedules.

import type { FastifyInstance } from 'fastify';
import { beatStatus, ConfigError, type BeatStatus, type Fennel } from '../../index.ts';

/** The answer: beatStatus(app), and why it is empty when the backend cannot hold a beat's state. */
export type SchedulesView = BeatStatus & { reason?: string };

export interface ScheduleRoutesOptions {
  app: Fennel;
}

export async function schedulesView(app: Fennel): Promise<SchedulesView> {
  try {
    return await beatStatus(app);
  } catch (error) {
    // beatBackend's ConfigError: this backend has no lease or records. Any other error (the engine cannot be
    // reached) is the request's, and answers as errors do (503 BROKER_UNAVAILABLE, …).
    if (!(error instanceof ConfigError)) throw error;
    return { leader: null, schedules: [], ...(app.schedules.size > 0 ? { reason: error.message } : {}) };
  }
}

export function registerScheduleRoutes(server: FastifyInstance, { app }: ScheduleRoutesOptions): void {
  server.get('/api/schedules', () => schedulesView(app));
}
