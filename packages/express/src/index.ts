import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import { createReadinessHandler, createGuard, type Guard, type GuardOptions, type RequestScope } from '@leak-guard/core'
import { bindRequestEvents, createScopeSlot, validateRouteTimeout, withGuard, type ClosingState, type ScopeHost } from '@leak-guard/core/adapter'

export type { GuardOptions, Guard, RequestScope } from '@leak-guard/core'
export { hardenServer, createShutdown } from '@leak-guard/core'
export type { HardenOptions, ShutdownOptions, ShutdownSummary, GracefulShutdown } from '@leak-guard/core'

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The request's AbortSignal (leak-guard): aborted on timeout, client disconnect, shutdown and at the end of the request. */
      readonly signal: AbortSignal
      /** The request's leak-guard scope. */
      readonly scope: RequestScope
    }
  }
}

/**
 * `req.signal` and `req.scope` are getters on the app's request prototype (Express keeps one per app
 * and sub-apps inherit it): see `createScopeSlot()`.
 */
const slot = createScopeSlot('express')

interface RoutedRequest {
  baseUrl?: string
  route?: { path?: unknown }
}

/** Express knows the matched route on `req.route` once routing reached it. */
const host: ScopeHost = {
  routeOf(_ctx, res) {
    const req = (res as unknown as { req?: RoutedRequest }).req
    const path = req?.route?.path
    return typeof path === 'string' ? `${req!.baseUrl ?? ''}${path}` : undefined
  },
}

export interface LeakGuardMiddleware extends RequestHandler {
  /** The guard behind this middleware: stats, live scopes, shutdown. */
  readonly guard: Guard
}

/**
 * Gives every request a scope with a lazy AbortSignal (`req.signal`), a deadline answered with 503,
 * and aborts on client disconnect. Mount it first, before body parsers and routes:
 *
 * @example
 * const app = express()
 * app.use(leakGuard({ timeout: 5_000 }))
 * app.use(express.json())
 * app.get('/users/:id', async (req, res) => res.json(await db.find(req.params.id, { signal: req.signal })))
 * app.use(leakGuardErrorHandler())
 */
export function leakGuard(options?: GuardOptions): LeakGuardMiddleware {
  const guard = createGuard(options)
  const context = guard.options.context
  return withGuard<RequestHandler>(function leakGuardMiddleware(req: Request, res: Response, next: NextFunction): void {
    // Mounted twice (app and sub-app): the first scope stays the request's scope.
    const scope = slot.begin(req, guard, req, res, undefined, host)
    if (scope === undefined) return next()
    if (context) {
      bindRequestEvents(req, scope)
      guard.enter(scope, next)
    } else {
      next()
    }
  }, guard)
}

/**
 * Per-route deadline, measured from when leak-guard saw the request; `false` removes it (streaming).
 * Checked once, here, not per request.
 *
 * @example
 * app.post('/upload', withTimeout(60_000), uploadHandler)
 * app.get('/events', withTimeout(false), sseHandler)
 */
export function withTimeout(ms: number | false): RequestHandler {
  const timeout = validateRouteTimeout(ms)
  return function leakGuardTimeout(req: Request, _res: Response, next: NextFunction): void {
    slot.get(req)?.setTimeout(timeout)
    next()
  }
}

/**
 * Error middleware to mount after your routes. Once leak-guard has answered a request (503 on
 * timeout or shutdown) or its client has left, a late rejection from the handler would otherwise reach
 * Express's final handler, which logs it and destroys the socket, breaking the client's keep-alive
 * connection. This swallows exactly those errors, counting them as late work, and passes every other
 * error on to your own error handlers.
 *
 * @example
 * app.use(routes)
 * app.use(leakGuardErrorHandler())
 * app.use(myErrorHandler)
 */
export function leakGuardErrorHandler(): ErrorRequestHandler {
  return function leakGuardErrorHandler(err: unknown, req: Request, res: Response, next: NextFunction): void {
    const scope = slot.get(req)
    if (scope !== undefined && scope.aborted && (res.headersSent || scope.ended)) {
      scope.reportLateSettle()
      return
    }
    next(err)
  }
}

/**
 * Readiness probe route: 200 while serving, 503 + `Connection: close` from the first moment of the
 * shutdown (`createShutdown({ guard })`, `guard.shutdown()`).
 *
 * @example
 * const mw = leakGuard()
 * app.get('/readyz', readiness(mw.guard))
 */
export function readiness(state: ClosingState): RequestHandler {
  const handler = createReadinessHandler(state)
  return function leakGuardReadiness(req: Request, res: Response): void {
    handler(req, res)
  }
}
