import { boolean, checkKeys, invalid, type Closeable } from '@leak-guard/core/adapter'

/** Where a guarded pool registers itself so the server's shutdown ends it. */
export interface ShutdownRegistry {
  register(resource: Closeable): () => void
}

export interface GuardPoolOptions {
  /**
   * `'deadline'`: a query inside a request runs with PostgreSQL's `statement_timeout` set to the
   * request's remaining time (plus a small slack, see the README), so the server stops it at the
   * deadline even if this process dies or the cancel is lost. `false`: leave `statement_timeout` alone.
   * @default 'deadline'
   */
  statementTimeout?: 'deadline' | false
  /**
   * Send PostgreSQL's CancelRequest for the backend running a request's query when the request aborts
   * (timeout, client gone, shutdown, end of the request). The connection is then destroyed instead of
   * returned to the pool, so a late cancel can never hit its next query.
   * @default true
   */
  cancel?: boolean
  /**
   * The guard (`middleware.guard`, `fastify.leakGuard`, `app.context.leakGuard`, `createGuard()`): the
   * pool registers with it, so the server's graceful shutdown ends the pool once requests are drained.
   * Leak reports need no guard: a query is attached to its request's scope, whose guard reports it.
   * @default undefined
   */
  guard?: ShutdownRegistry
}

export interface ResolvedGuardPoolOptions {
  statementTimeout: 'deadline' | false
  cancel: boolean
  guard: ShutdownRegistry | undefined
}

const keys = ['statementTimeout', 'cancel', 'guard'] as const

export function resolveGuardPoolOptions(options: GuardPoolOptions | undefined): ResolvedGuardPoolOptions {
  const o = checkKeys('guardPool()', options, keys)
  const statementTimeout = o.statementTimeout ?? 'deadline'
  if (statementTimeout !== 'deadline' && statementTimeout !== false) {
    throw invalid('statementTimeout', "`'deadline'` or `false`", statementTimeout)
  }
  const guard = o.guard
  if (guard !== undefined && (guard === null || typeof guard !== 'object' || typeof (guard as ShutdownRegistry).register !== 'function')) {
    throw invalid('guard', 'a leak-guard Guard (an object with a `register` function)', guard)
  }
  return {
    statementTimeout,
    cancel: boolean('cancel', o.cancel, true),
    guard: guard as ShutdownRegistry | undefined,
  }
}
