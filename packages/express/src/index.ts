import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express'
import { createReadinessHandler, createGuard, type GuardOptions, type RequestScope } from '@leak-guard/core'
import { bindRequestEvents, createScopeSlot, withGuard, type ClosingState, type ScopeHost, type WithGuard } from '@leak-guard/core/adapter'

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

const kPromiseAware = Symbol.for('leak-guard.express.promise-aware.v1')

const afterRoutes =
  'leakGuard() runs after routes that handle requests: `req.signal` and `req.scope` are undefined there and those requests have no deadline. Mount it first, before body parsers and routes.'

/**
 * `req.signal` and `req.scope` are getters on the app's request prototype (Express keeps one per app
 * and sub-apps inherit it), so a request pays for one own property, and the AbortSignal is only
 * created if someone reads it.
 */
const slot = createScopeSlot({ name: 'express', afterRoutes })

/**
 * leak-guard has answered the request (503 on timeout or shutdown) or its client left: an error from
 * its handler can reach nobody. `leakGuardErrorHandler()` and the Express 4 rejection watch drop it.
 */
function answeredOrGone(scope: RequestScope, res: Response): boolean {
  return scope.aborted && (res.headersSent || scope.ended)
}

type Handle = (req: Request, res: Response, next: NextFunction) => unknown

interface Express4Layer {
  handle: Handle
  handle_request(req: Request, res: Response, next: NextFunction): void
  [kPromiseAware]?: true
}

/**
 * Express 4 ignores the promise a handler returns, so when leak-guard aborts a request (deadline,
 * disconnect, shutdown) the handler's `await sleep(…, { signal })` rejection is unhandled and Node
 * exits: leak-guard would turn a timeout into an outage. Express 4's `Layer#handle_request` (one class
 * per copy of Express, found from the app's router) is taught to look at that promise for requests
 * with a scope: a rejection of a request leak-guard answered or whose client left is dropped and
 * counted as late work (Express 5 + `leakGuardErrorHandler()` does the same); any other rejection is
 * rethrown unchanged, so it stays unhandled exactly as Express 4 users know it. Express 5 (router 2,
 * `handleRequest`) handles promises itself and is left alone. No process-wide rejection handler.
 */
function watchExpress4Promises(req: Request): void {
  const stack = (req as unknown as { app?: { _router?: { stack?: unknown[] } } }).app?._router?.stack
  const layer = stack?.[0] as object | undefined
  if (layer === undefined || layer === null) return
  const proto = Object.getPrototypeOf(layer) as Express4Layer
  if (typeof proto.handle_request !== 'function' || proto[kPromiseAware] === true) return
  const original = proto.handle_request
  Object.defineProperty(proto, kPromiseAware, { value: true })
  proto.handle_request = function handle(this: Express4Layer, req: Request, res: Response, next: NextFunction): void {
    const scope = slot.get(req)
    const fn = this.handle
    if (scope === undefined || fn.length > 3) return original.call(this, req, res, next)
    // Express 4's own body of handle_request, plus a look at the result.
    let result: unknown
    try {
      result = fn(req, res, next)
    } catch (error) {
      next(error)
      return
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      ;(result as PromiseLike<unknown>).then(undefined, (error: unknown) => {
        if (!answeredOrGone(scope, res)) throw error
        scope.reportLateSettle()
      })
    }
  }
}

/** The app's router has a route before this middleware (looked at once per app). */
function routesBefore(req: Request, middleware: unknown): boolean {
  const app = (req as unknown as { app?: { _router?: { stack?: unknown[] }; router?: { stack?: unknown[] } } }).app
  // Express 4 keeps its router on `_router`, Express 5 on `router`.
  const stack = (app?._router ?? app?.router)?.stack
  if (!Array.isArray(stack)) return false
  for (const layer of stack as Array<{ handle?: unknown; route?: unknown }>) {
    if (layer.handle === middleware) return false
    if (layer.route !== undefined && layer.route !== null) return true
  }
  return false
}

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

/** The middleware, with the guard behind it (`mw.guard`: stats, live scopes, shutdown). */
export type LeakGuardMiddleware = WithGuard<RequestHandler>

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
  const middleware = function leakGuardMiddleware(req: Request, res: Response, next: NextFunction): void {
    // Mounted twice (app and sub-app): the first scope stays the request's scope. With other options
    // the second one's are silently ignored: say so, once per app.
    if (slot.held(req, guard)) return next()
    if (slot.install(req, guard)) {
      watchExpress4Promises(req)
      if (routesBefore(req, middleware)) slot.warnAfterRoutes(req)
    }
    const scope = guard.begin(req, res, undefined, host)
    slot.set(req, scope, guard)
    if (context) {
      bindRequestEvents(req, scope)
      guard.enter(scope, next)
    } else {
      next()
    }
  }
  return withGuard(middleware, guard)
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
  const applyTimeout = slot.routeTimeout(ms)
  return function leakGuardTimeout(req: Request, _res: Response, next: NextFunction): void {
    applyTimeout(req)
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
    if (scope !== undefined && answeredOrGone(scope, res)) {
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
