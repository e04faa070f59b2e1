// The result backend's Lua scripts (headers in each .lua file), with their KEYS and ARGV named.

import { defineScript } from '../../clients/redis/scripts.ts';

/** Stores metas in order, never replacing a SUCCESS (store.lua). ARGV[2..]: per key, its status then its meta. */
export const storeScript = defineScript('store', new URL('./store.lua', import.meta.url), {
  keys: [],
  restKeys: 'metaKeys',
  args: ['expiresSec'],
  restArgs: 'statusAndMeta',
});

/** A chord member's result joins its group; the last member learns the chord is complete (chord_join.lua). */
export const chordJoinScript = defineScript('chord_join', new URL('./chord_join.lua', import.meta.url), {
  keys: ['join'],
  args: ['index', 'resultJson', 'size', 'expiresSec', 'withResults'],
});

/** Takes or renews a lease; returns its holder and remaining ms (lease.lua). */
export const leaseScript = defineScript('lease', new URL('./lease.lua', import.meta.url), {
  keys: ['lease'],
  args: ['holder', 'ttlMs'],
});

/** Gives a lease up if the holder holds it (lease_release.lua). */
export const leaseReleaseScript = defineScript('lease_release', new URL('./lease_release.lua', import.meta.url), {
  keys: ['lease'],
  args: ['holder'],
});

/** Parks a call until its inputs are ready; says if they are ready or failed already (park.lua). */
export const parkScript = defineScript('park', new URL('./park.lua', import.meta.url), {
  keys: ['parked', 'waits'],
  restKeys: 'inputKeys',
  args: ['taskId', 'callJson', 'expiresSec'],
  restArgs: 'inputs',
});

/** The calls an input's stored outcome releases (release.lua). */
export const releaseScript = defineScript('release', new URL('./release.lua', import.meta.url), {
  keys: ['dependents', 'meta'],
  args: ['input'],
});
