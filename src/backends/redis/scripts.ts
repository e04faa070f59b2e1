// The result backend's Lua scripts (headers in each .lua file), with their KEYS and ARGV named.

import { defineScript } from '../../clients/redis/scripts.ts';

/** Stores metas in order, never replacing a SUCCESS (store.lua). ARGV[2..]: per key, its status then its meta. */
export const storeScript = defineScript('store', new URL('./store.lua', import.meta.url), {
  keys: [],
  restKeys: 'metaKeys',
  args: ['expiresSec'],
  restArgs: 'statusAndMeta',
});

/**
 * A chord member's result joins its group in Celery's layout (`.j`, `.t`, `.s`); the first call to find every member
 * in learns it completed the join (celery_chord_join.lua).
 */
export const celeryChordJoinScript = defineScript('celery_chord_join', new URL('./celery_chord_join.lua', import.meta.url), {
  keys: ['join', 'added', 'size', 'done'],
  args: ['index', 'entry', 'messageSize', 'expiresSec', 'withResults'],
});

/** Writes a chord's size (`.s`) before its members are sent, unless it has completed (celery_chord_start.lua). */
export const celeryChordStartScript = defineScript('celery_chord_start', new URL('./celery_chord_start.lua', import.meta.url), {
  keys: ['size', 'done', 'callbackMeta'],
  args: ['size', 'expiresSec'],
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
