import { performance } from 'node:perf_hooks'
import { onDeadline, type RequestScope, type SpawnedTask } from './request-scope.js'
import { kSubscribe, kTrack, kUntrack } from '../symbols.js'
import type { LeakGuardError } from '../errors.js'

/** Kinds of work an integration can attach to a request scope. */
export type TrackedKind = 'query' | 'job'

class TrackedWork implements SpawnedTask {
  readonly kind: TrackedKind
  readonly startedAt: number
  readonly stack: string | undefined
  #label: string | (() => string)

  constructor(kind: TrackedKind, label: string | (() => string), stack: string | undefined) {
    this.kind = kind
    this.startedAt = performance.now()
    this.stack = stack
    this.#label = label
  }

  get label(): string {
    const label = this.#label
    return typeof label === 'string' ? label : (this.#label = label())
  }
}

/**
 * Subscribes leak-guard's own cleanup (an integration's pool, queue or client) to the abort of `scope`:
 * like `scope.onAbort(fn)`, but in the end pipeline's second stage, after the scope's bookkeeping and
 * before the user's listeners (signal `'abort'` listeners, `onAbort` handlers), isolated from them. If
 * the scope already aborted, `fn` runs on the next microtask. Returns the function that removes `fn`.
 */
export function subscribeAbort(scope: RequestScope, fn: (reason: LeakGuardError) => void): () => void {
  return scope[kSubscribe](fn)
}

/**
 * Attaches a piece of work started elsewhere (a SQL query, a queued job) to `scope`: the live dump lists
 * it under its request, and if it is still attached a grace period after the request ended the guard
 * reports it as a `'leak'` of that kind. Returns the function that detaches it once the work settled
 * (idempotent). `label` may be a function, called only when a dump or a report reads it.
 */
export function trackWork(scope: RequestScope, kind: TrackedKind, label: string | (() => string), stack?: string): () => void {
  const task = new TrackedWork(kind, label, stack)
  scope[kTrack](task)
  let done = false
  return () => {
    if (done) return
    done = true
    scope[kUntrack](task)
  }
}

/**
 * Runs `scope`'s deadline now if it has passed but its timer has not fired yet: an integration can learn
 * of the deadline first (PostgreSQL's `statement_timeout`, set to the request's remaining time, fires on
 * the server a moment before the guard's timer runs here). The scope then aborts with its own
 * `TimeoutError` and the request is answered exactly as by the timer, so the client gets 503, not the
 * integration's error. Returns true if the scope is aborted afterwards; a deadline still ahead, or none,
 * changes nothing.
 */
export function expireDeadline(scope: RequestScope): boolean {
  if (!scope.aborted && scope.timeout !== false && scope.remaining() === 0) onDeadline(scope)
  return scope.aborted
}
