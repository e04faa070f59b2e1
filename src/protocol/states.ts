// Task states, with Celery's names and sets (celery/states.py): the one home of the state machine.

export const States = {
  PENDING: 'PENDING',
  RECEIVED: 'RECEIVED',
  STARTED: 'STARTED',
  PROGRESS: 'PROGRESS',
  RETRY: 'RETRY',
  SUCCESS: 'SUCCESS',
  FAILURE: 'FAILURE',
  REVOKED: 'REVOKED',
} as const;

export type TaskState = (typeof States)[keyof typeof States];

/** States after which a task never changes again. */
export const READY_STATES: ReadonlySet<string> = new Set([States.SUCCESS, States.FAILURE, States.REVOKED]);
/** Ready states that carry an exception. */
export const EXCEPTION_STATES: ReadonlySet<string> = new Set([States.FAILURE, States.REVOKED, States.RETRY]);

export function isReady(state: string): boolean {
  return READY_STATES.has(state);
}
