import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import type { LeakGuardError } from '../errors.js'
import { boolean, checkKeys, httpStatus, integerOrFalse, invalid, milliseconds, millisecondsOrFalse } from '../options.js'
import { storage } from './context.js'
import { captureUserStack } from '../observe/stack.js'
import type { Closeable, LeakEvent, ShutdownSummary, WorkKind } from '../types.js'
import { logLeak, type LeakLogger } from '../observe/leak-log.js'
import { watchOutgoing } from '../observe/outgoing.js'
import { takeSnapshot, type GuardSnapshot } from '../observe/snapshot.js'
import { kAnswer, kGuardBrand, kLiveNext, kLivePrev, kScopeOf } from '../symbols.js'
import { DeadlineList } from '../timeout/deadline-list.js'
import { readInboundDeadline, resolveInboundDeadline, type InboundDeadlineOptions, type ResolvedInboundDeadline } from '../timeout/deadline-header.js'
import { shutdownGuard } from '../server/shutdown.js'
import { AbortAnswer, type AnswerBody } from '../respond/index.js'
import {
  onDeadline,
  onResponseClose,
  RequestScope,
  type AnyRequest,
  type AnyResponse,
  type ScopeHost,
  type ScopeOutcome,
  type ScopedWork,
  type SpawnedTask,
} from './request-scope.js'

export type { Closeable, LeakEvent, WorkKind }

export interface GuardOptions {
  /**
   * Deadline for every request, in milliseconds from when the guard first sees it; `false` for none.
   * Routes override it (`withTimeout()`, Fastify's `config.leakGuard.timeout`).
   * @default 30000
   */
  timeout?: number | false
  /**
   * Status of the answer sent when the deadline passes before anything was sent (400–599).
   * @default 503
   */
  timeoutStatus?: number
  /**
   * Body of that answer: a string (sent as text/plain) or an object (sent as JSON). By default a JSON
   * error `{ statusCode, code, error, message }` on Express, and the framework's own error rendering on
   * Koa and Fastify. When set, it is sent as is by every adapter.
   * @default undefined
   */
  timeoutBody?: string | Record<string, unknown>
  /**
   * `Retry-After` seconds sent with the timeout and shutdown answers; `false` sends none.
   * @default 1
   */
  retryAfter?: number | false
  /**
   * Carry the scope in AsyncLocalStorage so `currentScope()`/`currentSignal()` work anywhere below the
   * handler. Turning it off saves the AsyncLocalStorage cost (large on Node 20, small on 22+).
   * @default true
   */
  context?: boolean
  /**
   * How long work started from a request (`scope.spawn`, dispatcher tasks) may keep running after the
   * request ended before it is reported as a leak, in milliseconds.
   * @default 1000
   */
  leakGracePeriod?: number
  /**
   * Record the stack where each piece of background work started, so leak reports say where it came
   * from. Costs a stack capture per `spawn`/task.
   * @default false
   */
  captureStacks?: boolean
  /**
   * Logger for leak events (pino-compatible: `warn(object, message)`). The Fastify adapter logs
   * through `fastify.log` when this is not set.
   * @default undefined
   */
  logger?: LeakLogger
  /**
   * Honour the deadline a caller sends (`Connect-Timeout-Ms`, `grpc-timeout`, optionally Envoy's
   * `x-envoy-expected-rq-timeout-ms` or a header of your own): the request's deadline becomes the
   * earlier of the local one and the caller's, minus `margin`. A received deadline only ever shortens
   * (so accepting it from anyone is safe); one already passed is answered at once as a timeout (503,
   * `LG_ERR_TIMEOUT`); a malformed one is ignored and counted. `false` reads no header.
   * @default { headers: ['connect', 'grpc'], margin: 0 }
   */
  inboundDeadline?: InboundDeadlineOptions | false
}

export interface ResolvedGuardOptions {
  timeout: number | false
  timeoutStatus: number
  timeoutBody: string | Record<string, unknown> | undefined
  retryAfter: number | false
  context: boolean
  leakGracePeriod: number
  captureStacks: boolean
  logger: LeakLogger | undefined
  inboundDeadline: ResolvedInboundDeadline | false
}

const guardKeys = ['timeout', 'timeoutStatus', 'timeoutBody', 'retryAfter', 'context', 'leakGracePeriod', 'captureStacks', 'logger', 'inboundDeadline'] as const

export function resolveGuardOptions(options?: GuardOptions): ResolvedGuardOptions {
  const o = checkKeys('createGuard()', options, guardKeys)
  const body = o.timeoutBody
  if (body !== undefined && typeof body !== 'string' && (body === null || typeof body !== 'object' || Array.isArray(body))) {
    throw invalid('timeoutBody', 'a string or a plain object', body)
  }
  if (body !== undefined && typeof body === 'object') {
    try {
      JSON.stringify(body)
    } catch {
      throw invalid('timeoutBody', 'an object that JSON.stringify() accepts', body)
    }
  }
  const logger = o.logger
  if (logger !== undefined && (logger === null || typeof logger !== 'object' || typeof (logger as LeakLogger).warn !== 'function')) {
    throw invalid('logger', 'an object with a `warn` function', logger)
  }
  return {
    timeout: millisecondsOrFalse('timeout', o.timeout, 30_000),
    timeoutStatus: httpStatus('timeoutStatus', o.timeoutStatus, 503),
    timeoutBody: body as ResolvedGuardOptions['timeoutBody'],
    retryAfter: integerOrFalse('retryAfter', o.retryAfter, 1, 0, 86_400),
    context: boolean('context', o.context, true),
    leakGracePeriod: milliseconds('leakGracePeriod', o.leakGracePeriod, 1_000),
    captureStacks: boolean('captureStacks', o.captureStacks, false),
    logger: logger as LeakLogger | undefined,
    inboundDeadline: resolveInboundDeadline(o.inboundDeadline),
  }
}



export interface GuardStats {
  /** Requests being handled now. */
  inFlight: number
  /** Requests seen since the guard was created. */
  started: number
  /** Requests whose response closed, by outcome. */
  ended: Record<ScopeOutcome, number>
  /** Work reported as outliving its request, by kind. */
  leaks: Record<LeakEvent['kind'], number>
  /** `detach()`ed tasks still running. */
  detached: number
  /**
   * Requests that came with a deadline header (`inboundDeadline`): `shortened` the local deadline (or
   * had already passed), `ignored` (no earlier than the local deadline), `invalid` (malformed, ignored).
   */
  inboundDeadlines: Record<InboundDeadlineResult, number>
}

/** What a received deadline header did: see `GuardStats.inboundDeadlines`. */
export type InboundDeadlineResult = 'shortened' | 'ignored' | 'invalid'

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

function noop(): void {}

function rethrow(error: unknown): never {
  throw error
}

/**
 * One per app: validates options once, keeps the registry of live request scopes and the counters,
 * and owns the server-lifetime signal that detached work and shutdown use.
 *
 * Events: `'leak'` (`LeakEvent`) when work outlives its request.
 */
export class Guard extends EventEmitter {
  readonly options: Readonly<ResolvedGuardOptions>
  /** @internal The answer to aborts that need one, built from the options (see `respond/`). */
  readonly answer: AbortAnswer
  readonly timeoutStatus: number
  readonly retryAfterHeaders: Record<string, string> | undefined
  readonly captureStacks: boolean
  readonly leakGracePeriod: number
  /** @internal Deadlines of the scopes on the default timeout. */
  readonly deadlines: DeadlineList<RequestScope> | undefined

  // The registry of live scopes: a list linked through the scopes themselves, oldest first. A Set
  // showed on a hello-world server: V8 shrinks and regrows its table as it swings between empty and a
  // few entries, which a server at low concurrency does on every request.
  #oldest: RequestScope | undefined = undefined
  #newest: RequestScope | undefined = undefined
  #size = 0
  #started = 0
  #ended: Mutable<GuardStats['ended']> = { ok: 0, timeout: 0, 'client-closed': 0, shutdown: 0 }
  #leaks: Mutable<GuardStats['leaks']> = { spawn: 0, task: 0, request: 0, handler: 0, query: 0, job: 0 }
  #detached = new Set<Promise<unknown>>()
  #inbound: Mutable<GuardStats['inboundDeadlines']> = { shortened: 0, ignored: 0, invalid: 0 }
  #lifetime: AbortController | undefined
  #closeables = new Set<Closeable>()
  #lateTimers = new Set<NodeJS.Timeout>()
  #closing = false
  #shutdownHook: (() => Promise<ShutdownSummary>) | undefined
  #endObservers: Array<(scope: RequestScope, outcome: ScopeOutcome) => void> | undefined
  #unwatch: (() => void) | undefined

  constructor(options?: GuardOptions) {
    super()
    const resolved = resolveGuardOptions(options)
    this.options = Object.freeze(resolved)
    this.answer = new AbortAnswer(resolved)
    this.timeoutStatus = resolved.timeoutStatus
    this.captureStacks = resolved.captureStacks
    this.leakGracePeriod = resolved.leakGracePeriod
    this.deadlines = resolved.timeout === false ? undefined : new DeadlineList<RequestScope>(resolved.timeout, onDeadline)
    this.retryAfterHeaders = this.answer.headers
    const logger = resolved.logger
    if (logger !== undefined) this.on('leak', (event: LeakEvent) => logLeak(logger, event))
    // Outgoing calls are attributed through AsyncLocalStorage, so only a guard that carries it can watch them.
    if (resolved.context) this.#unwatch = watchOutgoing(this)
  }

  /**
   * Starts the scope of a request: arms its deadline and watches its response for the end. Adapters call
   * this once per request; `ctx` and `host` let the adapter answer aborts through the framework.
   */
  begin(req: AnyRequest, res: AnyResponse, ctx?: unknown, host?: ScopeHost, timeout?: number | false): RequestScope {
    const local = timeout === undefined ? this.options.timeout : timeout
    const inboundOptions = this.options.inboundDeadline
    // Without a deadline header this costs one property read per configured header.
    const received = inboundOptions === false ? undefined : readInboundDeadline(req.headers, inboundOptions)
    let inbound = Infinity
    if (received !== undefined) {
      if (Number.isNaN(received)) this.#inbound.invalid++
      else {
        const ms = received - (inboundOptions as ResolvedInboundDeadline).margin
        inbound = ms > 0 ? ms : 0
        this.#inbound[local === false || inbound < local ? 'shortened' : 'ignored']++
      }
    }
    const scope = new RequestScope(this, req, res, local, ctx, host, inbound)
    const newest = this.#newest
    scope[kLivePrev] = newest
    if (newest === undefined) this.#oldest = scope
    else newest[kLiveNext] = scope
    this.#newest = scope
    this.#size++
    this.#started++
    ;(res as unknown as { [kScopeOf]: RequestScope })[kScopeOf] = scope
    res.on('close', onResponseClose)
    // The caller's deadline already passed: answered at once, before the handler runs.
    if (inbound === 0) scope[kAnswer](undefined)
    return scope
  }

  /** Runs `fn` with `scope` as the current scope, unless `context: false`. */
  enter<R>(scope: RequestScope, fn: () => R): R {
    return this.options.context ? storage.run(scope, fn) : fn()
  }

  /** The live request scopes, oldest first, as they are when called. */
  scopes(): IterableIterator<RequestScope> {
    return this.#liveScopes().values()
  }

  /** The live scopes now, as an array (the registry's links change as scopes end). */
  #liveScopes(): RequestScope[] {
    const list: RequestScope[] = []
    for (let scope = this.#oldest; scope !== undefined; scope = scope[kLiveNext]) list.push(scope)
    return list
  }

  /** Number of requests in flight. */
  get size(): number {
    return this.#size
  }

  stats(): GuardStats {
    return {
      inFlight: this.#size,
      started: this.#started,
      ended: { ...this.#ended },
      leaks: { ...this.#leaks },
      detached: this.#detached.size,
      inboundDeadlines: { ...this.#inbound },
    }
  }

  /**
   * The live dump: every in-flight request with its route, age, remaining deadline, state, abort
   * reason and pending work (spawned tasks, outgoing calls). `exclude` leaves one scope out (the
   * debug request itself).
   */
  snapshot(exclude?: RequestScope): GuardSnapshot {
    return takeSnapshot(this, exclude)
  }

  /**
   * Calls `fn(scope, outcome)` once per request when its response closes (metrics). Returns the
   * function that removes it. Without observers the end of a request costs one field check.
   */
  onScopeEnd(fn: (scope: RequestScope, outcome: ScopeOutcome) => void): () => void {
    const list = (this.#endObservers ??= [])
    list.push(fn)
    return () => {
      const index = list.indexOf(fn)
      if (index !== -1) list.splice(index, 1)
      if (list.length === 0 && this.#endObservers === list) this.#endObservers = undefined
    }
  }

  /** Aborted when the server shuts down; detached work and registered resources listen to it. */
  get lifetimeSignal(): AbortSignal {
    return (this.#lifetime ??= new AbortController()).signal
  }

  /** True once shutdown started. */
  get closing(): boolean {
    return this.#closing
  }

  /** Runs `fn(signal)` outside any request, tied to the server's lifetime (aborted on shutdown). */
  detach<T>(fn: ScopedWork<T>): Promise<T> {
    const signal = this.lifetimeSignal
    let promise: Promise<T>
    try {
      promise = Promise.resolve(storage.exit(() => fn(signal)))
    } catch (error) {
      promise = Promise.reject(error)
    }
    promise.catch(noop)
    const tracked = this.#detached
    tracked.add(promise)
    const settle = (): void => {
      tracked.delete(promise)
    }
    promise.then(settle, settle)
    return promise
  }

  /** Registers a dispatcher, pool or client so shutdown closes it. Returns a function that unregisters it. */
  register(resource: Closeable): () => void {
    this.#closeables.add(resource)
    return () => {
      this.#closeables.delete(resource)
    }
  }

  /** Resources registered with `register()`. */
  resources(): Closeable[] {
    return [...this.#closeables]
  }

  /**
   * Marks the guard as shutting down (`closing`, readiness answers 503) and aborts the lifetime signal
   * (detached work). Requests, live and new, keep running: the server drain decides what new requests
   * get, and `abortAll()` ends those still running at the grace deadline.
   */
  beginShutdown(): void {
    if (this.#closing) return
    this.#closing = true
    this.#lifetime ??= new AbortController()
    this.#lifetime.abort(this.answer.shutdown())
  }

  /** Aborts every live request with `reason` (default: `ShutdownError`) and answers those not yet answered. */
  abortAll(reason?: LeakGuardError): number {
    let count = 0
    for (const scope of this.#liveScopes()) {
      if (scope.state !== 'running') continue
      scope[kAnswer](reason ?? this.answer.shutdown())
      count++
    }
    return count
  }

  /** @internal */
  scopeEnded(scope: RequestScope, outcome: ScopeOutcome): void {
    const prev = scope[kLivePrev]
    const next = scope[kLiveNext]
    if (prev === undefined) {
      if (this.#oldest !== scope) return // not registered (or already removed)
      this.#oldest = next
    } else prev[kLiveNext] = next
    if (next === undefined) this.#newest = prev
    else next[kLivePrev] = prev
    scope[kLivePrev] = scope[kLiveNext] = undefined
    this.#size--
    this.#ended[outcome]++
    // Observers (metrics, `onScopeEnd`) come after the registry and the counters, each isolated: one
    // that throws is reported on the next tick and cannot keep the request in flight.
    const observers = this.#endObservers
    if (observers !== undefined) {
      for (const fn of observers) {
        try {
          fn(scope, outcome)
        } catch (error) {
          process.nextTick(rethrow, error)
        }
      }
    }
  }

  /** @internal Watches a scope's background tasks past its end and reports those still running as leaks. */
  trackLateTasks(scope: RequestScope, tasks: Set<SpawnedTask>): void {
    const timer = setTimeout(() => {
      this.#lateTimers.delete(timer)
      for (const task of tasks) this.reportLeak(scope, task.kind ?? 'spawn', task.stack)
    }, this.options.leakGracePeriod)
    timer.unref()
    this.#lateTimers.add(timer)
  }

  /** Reports work of `scope` that outlived it. Public so dispatchers and clients can report theirs. */
  reportLeak(scope: RequestScope, kind: LeakEvent['kind'], stack?: string): void {
    this.#leaks[kind]++
    if (this.listenerCount('leak') === 0) return
    const event: LeakEvent = {
      kind,
      scopeId: scope.id,
      method: scope.method,
      url: scope.url,
      route: scope.route,
      reason: scope.reason?.code ?? 'LG_ERR_REQUEST_ENDED',
      lateBy: scope.ended ? Math.round(performance.now() - scope.startTime - scope.age()) : 0,
      stack: stack ?? (this.captureStacks ? captureUserStack(Guard.prototype.reportLeak, Error.stackTraceLimit).stack : undefined),
    }
    this.emit('leak', event)
  }

  /**
   * Reports work that runs outside any request and outlived its cancellation by more than
   * `leakGracePeriod`: a queue worker's job whose processor kept running after its producer's request
   * ended (`@leak-guard/bullmq`). The event has `scopeId` 0, `method` `'JOB'` and `url` = `label`.
   */
  reportUnscopedLeak(kind: LeakEvent['kind'], work: { label: string; reason: string; lateBy: number; stack?: string | undefined }): void {
    this.#leaks[kind]++
    if (this.listenerCount('leak') === 0) return
    const event: LeakEvent = { kind, scopeId: 0, method: 'JOB', url: work.label, route: undefined, reason: work.reason, lateBy: Math.round(work.lateBy), stack: work.stack }
    this.emit('leak', event)
  }

  /**
   * The body configured with `timeoutBody`, for adapters that answer through the framework.
   * @deprecated Use `abortAnswer(guard).custom` from `@leak-guard/core/adapter`.
   */
  get customTimeoutBody(): AnswerBody | undefined {
    return this.answer.custom
  }

  /** @internal `createShutdown({ guard })` attaches its server drain here so `shutdown()` runs it. */
  attachShutdown(hook: () => Promise<ShutdownSummary>): () => void {
    this.#shutdownHook = hook
    return () => {
      if (this.#shutdownHook === hook) this.#shutdownHook = undefined
    }
  }

  /**
   * Graceful shutdown: runs the server drain of `createShutdown({ guard })` (or the Fastify adapter's
   * `fastify.close()`) when one is attached. Without one there are no connections to drain: it marks
   * the guard as closing, aborts live requests with `ShutdownError` and closes registered resources.
   */
  shutdown(): Promise<ShutdownSummary> {
    return this.#shutdownHook !== undefined ? this.#shutdownHook() : shutdownGuard(this)
  }

  /** Stops the guard's own timers (leak watchers, the idle deadline timer). Called by shutdown; safe to call twice. */
  dispose(): void {
    this.deadlines?.release()
    for (const timer of this.#lateTimers) clearTimeout(timer)
    this.#lateTimers.clear()
    this.#unwatch?.()
    this.#unwatch = undefined
  }
}

// The brand isGuard() checks (shutdown, pools, clients, debug, metrics): on the prototype, so it costs nothing per guard.
Object.defineProperty(Guard.prototype, kGuardBrand, { value: true })

/** Creates the guard of an app. Throws `LG_ERR_INVALID_OPTION` for any invalid option. */
export function createGuard(options?: GuardOptions): Guard {
  return new Guard(options)
}
