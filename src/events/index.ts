// URL scheme → event bus. Events travel through the broker's own engine, so a monitor needs nothing more
// than the broker URL.

import type { EventBus } from './events.ts';
import { LocalEventBus } from './local.ts';

const local = new Map<string, LocalEventBus>();

export function createEventBus(url: string): EventBus {
  // Engines other than memory:// get their cross-process buses in src/events/<engine>.ts; until one exists for
  // a scheme, its events stay in the process that sent them.
  let bus = local.get(url);
  if (!bus) local.set(url, (bus = new LocalEventBus()));
  return bus;
}
