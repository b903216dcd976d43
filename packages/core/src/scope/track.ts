import { performance } from 'node:perf_hooks'
import type { RequestScope, SpawnedTask } from './request-scope.js'
import { kTrack, kUntrack } from '../symbols.js'

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
