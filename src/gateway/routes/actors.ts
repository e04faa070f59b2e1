// The actors (GET /api/actors): what `fennel names list --json` prints, for the gateway's backend: every actor in
// the name server (name, class, mode, host, state, restarts, available, metadata) with the calls it has run on
// its current host, and the live actor hosts. Read from the result backend on each request (the name server's
// records, the actors' leases, the hosts' announcements), so it is the same whichever process asks.
// A backend that cannot hold the name server (rpc://) is not an error of the request: no actor can live on it, so
// the answer is no actors and no hosts, with the reason when the app declares actor classes (as /api/schedules).

import type { FastifyInstance } from 'fastify';
import { ConfigError, type Fennel, type HostRecord, type NameListing } from '../../index.ts';

/**
 * An actor as listed, with the calls it has run on its current host (null: that host is not live, or does not list
 * it). Without its constructor's arguments: they may hold what a page should not show (credentials, data).
 */
export type ActorView = Omit<NameListing, 'args'> & { calls: number | null };

/** The answer: the actors, the live hosts, and why both are empty when the backend cannot hold the name server. */
export interface ActorsView {
  actors: ActorView[];
  hosts: HostRecord[];
  reason?: string;
}

export interface ActorRoutesOptions {
  app: Fennel;
}

export async function actorsView(app: Fennel): Promise<ActorsView> {
  let listings: NameListing[];
  let hosts: HostRecord[];
  try {
    [listings, hosts] = await Promise.all([app.names.list(), app.names.hosts()]);
  } catch (error) {
    // Names' ConfigError: this backend keeps no records or leases. Any other error (the engine cannot be
    // reached) is the request's, and answers as errors do (503 BROKER_UNAVAILABLE, …).
    if (!(error instanceof ConfigError)) throw error;
    return { actors: [], hosts: [], ...(app.actorDefinitions.size > 0 ? { reason: error.message } : {}) };
  }
  const byNode = new Map(hosts.map((host) => [host.node, host]));
  // A host's count is of the calls the actor ran there since that host took it; a host that is not live (or an
  // older one that does not count by actor) has no count to give.
  const actors = listings.map(({ args: _args, ...listing }) => ({ ...listing, calls: byNode.get(listing.host)?.callsByActor?.[listing.id] ?? null }));
  return { actors, hosts: hosts.sort((a, b) => a.node.localeCompare(b.node)) };
}

export function registerActorRoutes(server: FastifyInstance, { app }: ActorRoutesOptions): void {
  server.get('/api/actors', () => actorsView(app));
}
