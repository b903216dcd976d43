import type { Middleware, ParameterizedContext, Next } from 'koa'
import { createGuard, type Guard, type GuardOptions, type LeakGuardError, type RequestScope } from '@leak-guard/core'
import { abortAnswer, checkClosingState, createScopeSlot, isUnanswerableAbort, needsAnswer, readinessAnswer, withGuard, type ClosingState, type ScopeHost, type WithGuard } from '@leak-guard/core/adapter'

export type { GuardOptions, Guard, RequestScope } from '@leak-guard/core'
export { hardenServer, createShutdown } from '@leak-guard/core'
export type { HardenOptions, ShutdownOptions, ShutdownSummary, GracefulShutdown } from '@leak-guard/core'

declare module 'koa' {
  interface ExtendableContext {
    /** The request's AbortSignal (leak-guard): aborted on timeout, client disconnect, shutdown and at the end of the request. */
    readonly signal: AbortSignal
    /** The request's leak-guard scope. */
    readonly scope: RequestScope
    /** The guard of the app. */
    readonly leakGuard: Guard
  }
}

const kSettle = Symbol('leak-guard.koa.settle')

/** Settles the middleware's wait for the rest of the chain early: with the abort's error, or `undefined`. */
type Settle = (error: LeakGuardError | undefined) => void

interface ScopedContext {
  /** Set while the middleware waits for the rest of the chain; the host's answer/cut settles it. */
  [kSettle]?: Settle | undefined
}

const afterRoutes =
  'leakGuard() runs after the routes (or not before them): `ctx.signal` and `ctx.scope` are undefined there and those requests have no deadline. Mount it first: app.use(leakGuard()) before the router.'

/** A router's middleware (@koa/router's `routes()` carries `.router`) comes before `middleware` in the app. */
function routesBefore(ctx: AnyContext, middleware: unknown): boolean {
  const stack = (ctx.app as { middleware?: unknown[] }).middleware
  if (!Array.isArray(stack)) return false
  for (const fn of stack as Array<{ router?: unknown }>) {
    if (fn === middleware) return false
    if (fn.router !== undefined) return true
  }
  return false
}

type AnyContext = ParameterizedContext

/** Getters on the app's context prototype: a request pays for one own property. */
const slot = createScopeSlot({ name: 'koa', afterRoutes, guardProperty: 'leakGuard' })

interface DestroyableStream {
  pipe(...args: unknown[]): unknown
  destroy(error?: Error): unknown
}

/** Takes the pending settle of the middleware's wait, if the chain is still running. */
function takeSettle(ctx: unknown): Settle | undefined {
  const scoped = ctx as ScopedContext
  const settle = scoped[kSettle]
  if (settle !== undefined) scoped[kSettle] = undefined
  return settle
}

/**
 * Koa answers only once the whole chain settled, so an abort that needs an answer (deadline,
 * shutdown) is answered by ending the middleware's wait with the error: it goes through Koa's error
 * path (your error middleware sees it; Koa answers with its status, `Retry-After` and message) while
 * the handler's signal aborts. Once the chain settled, Koa owns the response: core writes the answer.
 *
 * A deadline that hits while Koa streams a body: fail the body stream with the timeout so Koa's
 * pipeline reports an exposed TimeoutError (not logged) rather than a "Premature close" (logged).
 */
const host: ScopeHost = {
  answer(_scope, error, ctx) {
    const settle = takeSettle(ctx)
    if (settle === undefined) return false
    settle(error)
    return true
  },
  cut(_scope, error, ctx) {
    // Headers went out while the chain still ran (the handler flushed them): stop waiting for it.
    takeSettle(ctx)?.(undefined)
    const body = (ctx as AnyContext).body as Partial<DestroyableStream> | null | undefined
    if (body === null || body === undefined || typeof body.pipe !== 'function' || typeof body.destroy !== 'function') return false
    body.destroy(error)
    // Koa 3 streams with pipeline(), which destroys the response when the body fails; Koa 2 uses
    // body.pipe(res) and its onerror gives up once headers are sent, leaving the response open. Once
    // the error has gone through Koa, cut whatever is still open.
    const res = (ctx as AnyContext).res
    setImmediate(() => {
      if (!res.writableEnded && !res.destroyed) res.destroy()
    })
    return true
  },
  routeOf(ctx) {
    // @koa/router records the matched pattern here.
    const route = (ctx as { _matchedRoute?: unknown })._matchedRoute
    return typeof route === 'string' ? route : undefined
  },
}

/** The middleware, with the guard behind it (`mw.guard`: stats, live scopes, shutdown). */
export type LeakGuardMiddleware = WithGuard<Middleware>

/**
 * Waits for the rest of the chain, or less: the host settles the wait when the scope is answered. A
 * chain that settles after that is late work (reported if it overran the grace period).
 */
function runChain(scoped: ScopedContext, scope: RequestScope, next: Next): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    scoped[kSettle] = (error) => (error === undefined ? resolve() : reject(error))
    next().then(
      () => {
        if (takeSettle(scoped) === undefined) return scope.reportLateSettle()
        resolve()
      },
      (error: unknown) => {
        if (takeSettle(scoped) === undefined) return scope.reportLateSettle()
        reject(error)
      },
    )
  })
}

/**
 * Gives every request a scope with a lazy AbortSignal (`ctx.signal`), a deadline answered with 503,
 * and aborts on client disconnect. Koa answers only once the whole chain settles, so on timeout the
 * middleware stops waiting for the rest of the chain and throws the `TimeoutError` into Koa's error
 * path (your error middleware sees it; Koa answers with its status, `Retry-After` header and message),
 * while the handler's signal aborts. Mount it first.
 *
 * @example
 * const app = new Koa()
 * app.use(leakGuard({ timeout: 5_000 }))
 * app.use(bodyParser())
 * app.use(async (ctx) => { ctx.body = await db.find(ctx.query.id, { signal: ctx.signal }) })
 */
export function leakGuard(options?: GuardOptions): LeakGuardMiddleware {
  const guard = createGuard(options)
  const context = guard.options.context
  const body = abortAnswer(guard).custom
  const middleware = async function leakGuardMiddleware(ctx: AnyContext, next: Next): Promise<void> {
    // A second leakGuard() on the same request: the first one's options apply.
    if (slot.held(ctx, guard)) {
      await next()
      return
    }
    if (slot.install(ctx, guard) && routesBefore(ctx, middleware)) slot.warnAfterRoutes(ctx)
    const scope = guard.begin(ctx.req, ctx.res, ctx, host)
    slot.set(ctx, scope, guard)
    const scoped = ctx as unknown as ScopedContext
    try {
      await (context ? guard.enter(scope, () => runChain(scoped, scope, next)) : runChain(scoped, scope, next))
    } catch (error) {
      // The abort's own error, delivered by the host: answer with the configured body instead of Koa's rendering.
      if (body !== undefined && error === scope.reason && needsAnswer(error)) {
        ctx.status = error.statusCode
        if (error.headers !== undefined) ctx.set(error.headers)
        ctx.type = body.type
        ctx.body = body.payload
        return
      }
      // The handler's work rejected with the scope's own abort after its client left (or after
      // leak-guard answered): nobody can be answered, and Koa's onerror would print the AbortError's
      // stack for every disconnect. Count it as late work if it settled late; Koa's respond() then
      // finds the response unwritable and does nothing.
      if (isUnanswerableAbort(scope, ctx.res, error)) {
        scope.reportLateSettle()
        return
      }
      throw error
    }
  }
  return withGuard(middleware, guard)
}

/**
 * Per-route deadline, measured from when leak-guard saw the request; `false` removes it (streaming).
 * Checked once, here, not per request.
 *
 * @example
 * router.post('/upload', withTimeout(60_000), upload)
 */
export function withTimeout(ms: number | false): Middleware {
  const applyTimeout = slot.routeTimeout(ms)
  return function leakGuardTimeout(ctx: AnyContext, next: Next) {
    applyTimeout(ctx)
    return next()
  }
}

/**
 * Readiness probe middleware: 200 while serving, 503 + `Connection: close` from the first moment of
 * the shutdown. Mount it on a route, or give `path` to answer that path and pass everything else on.
 *
 * @example
 * const mw = leakGuard()
 * app.use(mw)
 * app.use(readiness(mw.guard, '/readyz'))
 */
export function readiness(state: ClosingState, path?: string): Middleware {
  checkClosingState(state)
  return function leakGuardReadiness(ctx: AnyContext, next: Next) {
    if (path !== undefined && ctx.path !== path) return next()
    const answer = readinessAnswer(state, ctx.req.httpVersionMajor >= 2)
    ctx.status = answer.status
    ctx.set(answer.headers)
    ctx.body = answer.body
    return undefined
  }
}
