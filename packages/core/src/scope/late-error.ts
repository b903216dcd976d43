import { ClientClosedError } from '../errors.js'
import type { AnyResponse, RequestScope } from './request-scope.js'

/**
 * `error` is `scope`'s own abort: its reason itself, or an `AbortError` whose `cause` is the reason
 * (what `timers/promises`, `events.once()`, streams and most signal-aware APIs reject with).
 */
export function isOwnAbort(scope: RequestScope, error: unknown): boolean {
  const reason = scope.reason
  if (reason === undefined) return false
  if (error === reason) return true
  return error !== null && typeof error === 'object' && (error as { name?: unknown }).name === 'AbortError' && (error as { cause?: unknown }).cause === reason
}

/**
 * `error` is the scope's own abort arriving where nobody can be answered any more: the client left
 * (or the request ended), or leak-guard already answered the request (headers sent). A framework would
 * only log it (Koa's `onerror`, Fastify's error handler, Express's final handler); adapters drop it
 * and call `scope.reportLateSettle()` instead. An abort that still needs its answer (a deadline the
 * framework answers through its own error path) is not one.
 */
export function isUnanswerableAbort(scope: RequestScope, res: AnyResponse, error: unknown): boolean {
  if (!isOwnAbort(scope, error)) return false
  return scope.ended || scope.reason instanceof ClientClosedError || res.headersSent
}
