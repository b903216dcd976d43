import type {
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'
import {
  InvalidOptionError,
  createGuard,
  createShutdown,
  type GracefulShutdown,
  type ShutdownOptions,
  type Guard,
  type GuardOptions,
  type LeakEvent,
  type LeakGuardError,
  type RequestScope,
} from '@leak-guard/core'
import { abortAnswer, checkClosingState, frameworkCloses, isUnanswerableAbort, needsAnswer, readinessAnswer, logLeak, validateRouteTimeout, type AnswerBody, type ClosingState, type ScopeHost } from '@leak-guard/core/adapter'

export type { GuardOptions, Guard, RequestScope } from '@leak-guard/core'
export { hardenServer } from '@leak-guard/core'
export type { HardenOptions, ShutdownOptions, ShutdownSummary } from '@leak-guard/core'

/** Options of the plugin: the guard's options plus `shutdown`. */
export interface LeakGuardPluginOptions extends GuardOptions {
  /**
   * Graceful shutdown of `fastify.server` through leak-guard (`createShutdown()` options without
   * `guard`): `fastify.close()` then drains with `Connection: close`, closes idle sockets at once,
   * aborts at `gracePeriod` and forces at `forceAfter`; `fastify.leakGuard.shutdown()` runs
   * `readinessDelay` first, then `fastify.close()`, and resolves with the summary. `false` leaves
   * `fastify.close()` as it is.
   * @default {}
   */
  shutdown?: Omit<ShutdownOptions, 'guard'> | false
}

/** Per-route settings, under `config.leakGuard`. */
export interface LeakGuardRouteConfig {
  /** Deadline of this route in milliseconds from when leak-guard saw the request; `false` for none (streaming). */
  timeout?: number | false
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's leak-guard scope; `request.scope.signal` is its AbortSignal. */
    scope: RequestScope
  }
  interface FastifyInstance {
    /** The guard of this app: stats, live scopes, shutdown. */
    leakGuard: Guard
  }
  interface FastifyContextConfig {
    leakGuard?: LeakGuardRouteConfig
  }
}

/** Answers an abort through Fastify: its error handler renders `error`, or the configured `timeoutBody` goes as is. */
function sendAbort(reply: FastifyReply, error: LeakGuardError, body: AnswerBody | undefined): void {
  if (body === undefined) {
    reply.send(error)
    return
  }
  reply.code(error.statusCode)
  if (error.headers !== undefined) reply.headers(error.headers)
  reply.type(body.type).send(body.payload)
}

/** The scope was aborted with a reason leak-guard answers (timeout, shutdown): the reply is taken. */
function answered(scope: RequestScope): boolean {
  return needsAnswer(scope.reason)
}

/** The handler settled after its answer: report it if it overran the grace period, give Fastify nothing. */
function late(scope: RequestScope): undefined {
  scope.reportLateSettle()
  return undefined
}

function routeTimeout(config: unknown, url: string): number | false | undefined {
  if (config === undefined || config === null || typeof config !== 'object') return undefined
  const settings = (config as { leakGuard?: unknown }).leakGuard
  if (settings === undefined) return undefined
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) {
    return validateRouteTimeout(settings, `config.leakGuard of ${url}`)
  }
  for (const key of Object.keys(settings)) {
    if (key !== 'timeout') throw new InvalidOptionError(key, `Unknown option \`config.leakGuard.${key}\` on route ${url}; expected \`timeout\``)
  }
  const timeout = (settings as LeakGuardRouteConfig).timeout
  return timeout === undefined ? undefined : validateRouteTimeout(timeout, `config.leakGuard.timeout of ${url}`)
}

const plugin: FastifyPluginCallback<LeakGuardPluginOptions> = function leakGuardPlugin(fastify, options, done) {
  let guard: Guard
  let shutdown: GracefulShutdown | undefined
  try {
    // Fastify passes its own registration keys (prefix, logLevel) along with ours.
    const { prefix: _prefix, logLevel: _logLevel, logSerializers: _s, shutdown: shutdownOptions, ...own } = options as LeakGuardPluginOptions & Record<string, unknown>
    guard = createGuard(own)
    if (shutdownOptions !== false) shutdown = createShutdown(fastify.server, { ...(shutdownOptions ?? {}), guard })
  } catch (error) {
    done(error as Error)
    return
  }
  const body = abortAnswer(guard).custom
  // Leaks are logged through Fastify's own logger unless a `logger` option took that job.
  if (guard.options.logger === undefined) guard.on('leak', (event: LeakEvent) => logLeak(fastify.log, event))

  // Aborts are answered through reply.send(), i.e. Fastify's error handler, wherever they land: while
  // the body is read or in a slow preHandler (Fastify then skips the handler), or in the handler (whose
  // late result the handler wrapper swallows).
  const host: ScopeHost = {
    answer(_scope, error, reply) {
      const r = reply as FastifyReply
      if (!r.sent) sendAbort(r, error, body)
      return true
    },
    // `reply.sent` is true once hijacked or ended: hijacked is sent but not ended. Checked only when a
    // deadline or shutdown hits, so hijack() itself needs no wrapping.
    handedOver(reply) {
      const r = reply as FastifyReply
      return r.sent && !r.raw.writableEnded
    },
  }

  fastify.decorate('leakGuard', guard)
  fastify.decorateRequest('scope', null as unknown as RequestScope)

  fastify.addHook('onRoute', (route: RouteOptions) => {
    const timeout = routeTimeout(route.config, route.url)
    if (timeout !== undefined) {
      const setRouteTimeout = function leakGuardRouteTimeout(request: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction): void {
        request.scope?.setTimeout(timeout)
        next()
      }
      const existing = route.onRequest
      route.onRequest = existing === undefined ? [setRouteTimeout] : [setRouteTimeout, ...(Array.isArray(existing) ? existing : [existing])]
    }
    const handler = route.handler
    const url = route.url
    route.handler = function leakGuardHandler(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      // `scope` is undefined when another plugin's onRoute (ran after ours) calls this wrapper with other
      // arguments: @fastify/websocket calls a websocket route's handler as (socket, request).
      const scope = (request as { scope?: RequestScope | null }).scope ?? null
      if (scope !== null) scope.route = url
      const result: unknown = handler.call(this, request, reply)
      if (scope === null || result === reply || result === null || typeof result !== 'object' || typeof (result as PromiseLike<unknown>).then !== 'function') {
        return result
      }
      // On timeout or shutdown the host answers through reply.send() at once (Fastify's error
      // handler); the handler's late result or rejection is then turned into `undefined`, which
      // Fastify ignores for a sent reply, instead of a "Reply was already sent" warning or a logged
      // error. Lighter than racing: no promise of our own and no abort listener per request.
      return (result as PromiseLike<unknown>).then(
        (value) => (answered(scope) ? late(scope) : value),
        (error: unknown) => {
          // A client that left makes the handler's awaited work reject with the scope's own abort:
          // Fastify's error handler would log it as a 500 for every disconnect, with nobody to answer.
          if (answered(scope) || isUnanswerableAbort(scope, reply.raw, error)) return late(scope)
          throw error
        },
      )
    }
  })

  fastify.addHook('onRequest', function leakGuardOnRequest(request, reply, next) {
    if (request.scope !== null) return next()
    const scope = guard.begin(request.raw, reply.raw, reply, host)
    request.scope = scope
    // Fastify runs its content-type parsers in an AsyncResource of the request, so the rest of the
    // lifecycle stays in this context after the body was read from socket events: no second hook
    // (test/conformance/context-body.test.ts sends the body late to check it).
    guard.enter(scope, next)
  })

  if (shutdown !== undefined) {
    // fastify.close() stops routing, runs preClose, then closes the server itself and runs onClose
    // once it closed: the drain starts in preClose and its summary is awaited in onClose.
    const closing = frameworkCloses(shutdown, () => {
      void fastify.close()
    })
    fastify.addHook('preClose', function leakGuardPreClose(next) {
      void closing()
      next()
    })
    fastify.addHook('onClose', async function leakGuardOnClose() {
      await closing()
    })
  }

  // The guard's own subscriptions and timers end with the app, drained or not.
  fastify.addHook('onClose', function leakGuardDispose(_instance, next) {
    guard.dispose()
    next()
  })

  done()
}

/**
 * Readiness probe handler: 200 while serving, 503 + `Connection: close` from the first moment of the
 * shutdown.
 *
 * @example
 * app.get('/readyz', readiness(app.leakGuard))
 */
export function readiness(state: ClosingState) {
  checkClosingState(state)
  return function leakGuardReadiness(request: FastifyRequest, reply: FastifyReply): void {
    const answer = readinessAnswer(state, request.raw.httpVersionMajor >= 2)
    reply.code(answer.status).headers(answer.headers).send(answer.body)
  }
}

/**
 * Fastify plugin: gives every request a scope (`request.scope`, `request.scope.signal`), a deadline
 * answered with 503 through Fastify's error handler, and aborts on client disconnect.
 *
 * @example
 * const app = Fastify()
 * await app.register(leakGuard, { timeout: 5_000 })
 * app.get('/slow', { config: { leakGuard: { timeout: 30_000 } } }, async (request) => work(request.scope.signal))
 */
export const leakGuard = fp(plugin, { fastify: '4.x || 5.x', name: '@leak-guard/fastify' })
export default leakGuard
