// Fennel's public surface. Everything a user may import is listed here by name; anything else is internal
// and may change without notice.

export { Fennel, isFennelApp } from './app/fennel.ts';
export { AsyncResult } from './app/result.ts';
export { BroadcastResult, type BroadcastOutcome } from './app/broadcast.ts';
export { directQueue } from './protocol/queues.ts';
export { chain, group, chord, Signature, Chain, Group, Chord, GroupResult } from './app/canvas.ts';
export type { CanvasNode, SignatureDict, SignatureOptions } from './app/canvas.ts';
export type { GetOptions } from './app/result.ts';
export { currentTask } from './app/context.ts';
export type { TaskContext } from './app/context.ts';
export type { Task, CallOptions, TaskOptions, TaskFunction } from './app/task.ts';
export type { FennelOptions, ResolvedConfig, Route } from './app/config.ts';
export { States, READY_STATES } from './protocol/states.ts';
export type { TaskState } from './protocol/states.ts';
export type { TaskMeta } from './protocol/result.ts';
export type { Transport, Delivery, DeadLetter, QueueConsumers, QueueStats, TransportCapabilities } from './transports/transport.ts';
export type { ResultBackend } from './backends/backend.ts';
export { Worker } from './worker/worker.ts';
export { Beat, type BeatOptions, type Fire } from './beat/beat.ts';
export { beatStatus, type BeatStatus, type ScheduleStatus } from './beat/status.ts';
export type { CatchUp, Schedule, ScheduleOptions, ScheduleSpec, Timetable } from './beat/schedule.ts';
export type { FennelEvent, EventBus, EventType, TaskEventType, WorkerEventType } from './events/events.ts';
export { HEARTBEAT_SEC } from './events/events.ts';
export type { Channel, Subscription, ChannelOptions, SubscribeOptions, OverflowPolicy } from './channels/channel.ts';
export type { ChannelEngine } from './channels/engine.ts';
export { Control, Inspect, type CommandResult, type ControlOptions, type Replies, type TaskInfo } from './control/control.ts';
export type { ControlOutcome } from './control/client.ts';
export type { MailboxEngine } from './control/mailbox.ts';
export type { AutoscaleOptions } from './worker/autoscale.ts';
export { ActorType, type ActorProxy, type ActorHandle, type ActorOptions, type CreateOptions, type ProxyMethod } from './actors/actor.ts';
export type { ActorEntry, NameListing, HostRecord, InstanceMode } from './actors/names.ts';
export type { Names } from './actors/names.ts';
export type { WorkerOptions, PoolKind } from './worker/worker.ts';
export { Cache, type CacheOptions, type CacheSpec, type SetOptions, type WrapOptions } from './cache/cache.ts';
export { cacheLatency, processCacheStats, type CacheStats } from './cache/stats.ts';
export type { CacheEngine } from './cache/engine.ts';
export type { TaskCacheOptions } from './app/memo.ts';
export {
  FennelError,
  ConfigError,
  SerializationError,
  PayloadTooLargeError,
  ProtocolError,
  TimeoutError,
  RemoteTaskError,
  BrokerUnavailableError,
  ClosedError,
  ChannelOverflowError,
  ActorNotFoundError,
  CacheError,
  Retry,
  Reject,
} from './errors.ts';
