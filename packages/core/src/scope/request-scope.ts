import { getEventListeners } from 'node:events'
import { performance } from 'node:perf_hooks'
import type { AnyRequest, AnyResponse, ScopedWork, ScopeOutcome, SpawnedTask, WorkKind } from '../types.js'
import {
  ClientClosedError,
  LeakGuardError,
  ShutdownError,
  TimeoutError,
  requestEnded,
} from '../errors.js'
import { invalid, MAX_TIMER } from '../options.js'
import { deliver, needsAnswer, type AbortAnswer } from '../respond/index.js'
import { AsyncLocalStorage } from 'node:async_hooks'
import { captureUserStack } from '../observe/stack.js'
import type { DeadlineList } from '../timeout/deadline-list.js'
import { kAnswer, kArm, kDeadline, kEnd, kScopeOf, kList, kLiveNext, kLivePrev, kNext, kOwner, kPrev, kSubscribe, kTrack, kUntrack } from '../symbols.js'

export type { AnyRequest, AnyResponse, ScopedWork, ScopeOutcome, SpawnedTask }



/**
 * What an adapter lends the core: how to answer an abort through the framework when no race is
 * active. One static object per adapter, so a request allocates nothing for it.
 */
export interface ScopeHost {
  /** Answer `error` through the framework. Return `false` to let core write the raw response. */
  answer?(scope: RequestScope, error: LeakGuardError, ctx: unknown): boolean
  /**
   * Cut a response whose headers were already sent, e.g. by failing the framework's body stream with
   * `error` so the framework reports an exposed error instead of a "Premature close". Return `false` to
   * let core destroy the response.
   */
  cut?(scope: RequestScope, error: LeakGuardError, ctx: unknown): boolean
  /**
   * The framework handed the raw response to the handler (Fastify's `reply.hijack()`: SSE written by
   * hand, a WebSocket upgrade). Read only when a deadline or a shutdown hits, so it costs nothing per
   * request. A hijacked response is out of the deadline, as Fastify's own `handlerTimeout` clears its
   * timer on hijack; a shutdown still aborts its signal but leaves the response to its owner (the
   * drain's `force()` closes it at `forceAfter`). A client disconnect ends the scope as usual.
   */
  handedOver?(ctx: unknown): boolean
  /** The matched route pattern, read when a dump asks and once when the request ends (Express, Koa). */
  routeOf?(ctx: unknown, res: AnyResponse): string | undefined
}

/** What a scope needs from its guard. Implemented by `Guard`; internal. */
export interface ScopeOwner {
  /** What an abort that needs an answer answers (status, `Retry-After`, body). */
  readonly answer: AbortAnswer
  readonly captureStacks: boolean
  readonly leakGracePeriod: number
  /** Deadlines of the scopes that use the default timeout; `undefined` when it is `false`. */
  readonly deadlines: DeadlineList<RequestScope> | undefined
  scopeEnded(scope: RequestScope, outcome: ScopeOutcome): void
  trackLateTasks(scope: RequestScope, tasks: Set<SpawnedTask>): void
  reportLeak(scope: RequestScope, kind: WorkKind, stack?: string): void
  detach<T>(fn: ScopedWork<T>): Promise<T>
}



const OPEN = 0
const ABORTED = 1
const ENDED = 2

// Flag bits kept in one small integer so every scope has the same shape.
const STREAMING = 1
const INBOUND = 2

type AbortHandler = (reason: LeakGuardError) => void

let nextId = 1

/** @internal A scope's deadline passed: abort it and answer (its own timer, or the guard's deadline list). */
export function onDeadline(scope: RequestScope): void {
  scope[kAnswer](undefined)
}

function markHandled(): void {}

/**
 * @internal The one `'close'` listener the guard puts on a response: whether the response finished
 * decides between a normal end and a client that left (`[kEnd]`). A response that never finished
 * means the client left.
 */
export function onResponseClose(this: AnyResponse): void {
  const holder = this as unknown as { [kScopeOf]?: RequestScope }
  const scope = holder[kScopeOf]
  this.removeListener('close', onResponseClose)
  if (scope === undefined) return
  // HTTP/2 compat responses finish when the stream ends; HTTP/1 when the socket flushed the last byte.
  const complete = 'stream' in this ? this.writableEnded : this.writableFinished
  scope[kEnd](complete)
}

function rethrow(error: unknown): never {
  throw error
}

/**
 * Calls one abort listener so that its exception cannot skip the rest of the scope's end: it is
 * reported on the next tick as an uncaught exception, as Node's EventTarget reports a throwing
 * 'abort' listener of the signal.
 */
function callIsolated(fn: AbortHandler, reason: LeakGuardError): void {
  try {
    fn(reason)
  } catch (error) {
    process.nextTick(rethrow, error)
  }
}

function remove(list: AbortHandler[], fn: AbortHandler): void {
  const index = list.indexOf(fn)
  if (index !== -1) list.splice(index, 1)
}

function callAll(list: AbortHandler[] | undefined, reason: LeakGuardError): void {
  if (list !== undefined) for (const fn of list) callIsolated(fn, reason)
}

/**
 * The AsyncLocalStorage that carries the current request scope. It lives on `globalThis` under a
 * `Symbol.for` key so that two copies of @leak-guard/core (an ESM and a CJS one, or two versions in
 * node_modules) share one store and `currentScope()` from either copy sees the same request.
 */
const kStore = Symbol.for('leak-guard.context.v1')

type GlobalWithStore = typeof globalThis & { [kStore]?: AsyncLocalStorage<RequestScope> }

export const storage: AsyncLocalStorage<RequestScope> =
  ((globalThis as GlobalWithStore)[kStore] ??= new AsyncLocalStorage<RequestScope>())

/** The scope of the request whose code is running now, or `undefined` outside any request. */
export function currentScope(): RequestScope | undefined {
  return storage.getStore()
}

/** The AbortSignal of the request whose code is running now, or `undefined` outside any request. */
export function currentSignal(): AbortSignal | undefined {
  return storage.getStore()?.signal
}

/**
 * The Node analogue of Go's request context: one per request, created by the guard when it first
 * sees the request and ended when the response closes.
 *
 * The AbortSignal is created on first read; until then an abort only records its reason, which the
 * signal handed out later carries.
 */
export class RequestScope {
  /** Process-unique id, for dumps and logs. */
  readonly id: number
  readonly method: string
  readonly url: string
  #route: string | undefined
  /** `performance.now()` when the guard saw the request. */
  readonly startTime: number

  #owner: ScopeOwner
  #res: AnyResponse | undefined
  #ctx: unknown
  #host: ScopeHost | undefined
  #controller: AbortController | undefined
  #reason: LeakGuardError | undefined
  #state: number
  #flags: number
  #timeout: number | false
  /** The caller's deadline (`inboundDeadline`), in ms from the start; `Infinity` when none came. */
  #inbound: number
  #timer: NodeJS.Timeout | undefined
  #handlers: AbortHandler[] | undefined
  #subscribers: AbortHandler[] | undefined
  #tasks: Set<SpawnedTask> | undefined
  #endTime: number
  #abortTime: number
  // Deadline-list links: keyed by symbols only core holds, but kept in the declarations (not stripped)
  // because the scope's type must satisfy DeadlineEntry where the guard's deadline list is declared.
  [kDeadline]: number
  [kList]: DeadlineList<never> | undefined
  [kPrev]: RequestScope | undefined
  [kNext]: RequestScope | undefined
  /** @internal */ [kLivePrev]: RequestScope | undefined
  /** @internal */ [kLiveNext]: RequestScope | undefined

  /** @internal Created by `Guard#begin`. */
  constructor(owner: ScopeOwner, req: AnyRequest, res: AnyResponse, timeout: number | false, ctx: unknown, host: ScopeHost | undefined, inbound = Infinity) {
    this.id = nextId++
    this.method = req.method ?? 'GET'
    this.url = req.url ?? '/'
    this.#route = undefined
    this.startTime = performance.now()
    this.#owner = owner
    this.#res = res
    this.#ctx = ctx
    this.#host = host
    this.#controller = undefined
    this.#reason = undefined
    this.#state = OPEN
    this.#flags = 0
    this.#timeout = timeout
    this.#inbound = inbound
    this.#timer = undefined
    this.#handlers = undefined
    this.#subscribers = undefined
    this.#tasks = undefined
    this.#endTime = 0
    this.#abortTime = 0
    this[kDeadline] = 0
    this[kList] = undefined
    this[kPrev] = undefined
    this[kNext] = undefined
    this[kLivePrev] = undefined
    this[kLiveNext] = undefined
    if (inbound !== Infinity && (timeout === false || inbound < timeout)) {
      // The caller's deadline comes first: a timer of its own, as a per-route timeout has.
      this.#timeout = inbound
      this.#flags = INBOUND
      this[kArm](inbound)
    } else if (timeout !== false) {
      const deadlines = owner.deadlines
      if (deadlines !== undefined && timeout === deadlines.ms) deadlines.add(this, this.startTime)
      else this[kArm](timeout)
    }
  }

  /** Stops the deadline: leaves the guard's deadline list or clears the scope's own timer. */
  #disarm(): void {
    this[kList]?.remove(this as never)
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
  }

  /** The route pattern once the framework matched one (`/users/:id`), else `undefined`. */
  get route(): string | undefined {
    if (this.#route === undefined && this.#state !== ENDED && this.#res !== undefined) return this.#host?.routeOf?.(this.#ctx, this.#res)
    return this.#route
  }

  set route(value: string | undefined) {
    this.#route = value
  }

  /** The request's AbortSignal. Aborted on timeout, client disconnect, shutdown, and when the request ends. */
  get signal(): AbortSignal {
    let controller = this.#controller
    if (controller === undefined) {
      controller = this.#controller = new AbortController()
      if (this.#reason !== undefined) controller.abort(this.#reason)
    } else if (this.#reason !== undefined && !controller.signal.aborted) {
      // Ended with nobody listening (see kEnd): abort now, for whoever reads it after the end.
      controller.abort(this.#reason)
    }
    return controller.signal
  }

  /** True once the scope was aborted (including by the end of the request). */
  get aborted(): boolean {
    return this.#reason !== undefined
  }

  /** The first abort reason: `TimeoutError`, `ClientClosedError`, `ShutdownError` or `RequestEndedError`. */
  get reason(): LeakGuardError | undefined {
    return this.#reason
  }

  /** True once the response has closed. */
  get ended(): boolean {
    return this.#state === ENDED
  }

  /**
   * The current timeout in milliseconds from the start of the request, or `false` for none: the earliest
   * of the local one (guard, route) and the caller's (`inboundDeadline`).
   */
  get timeout(): number | false {
    return this.#timeout
  }

  /**
   * Where the deadline in force comes from: `'inbound'` when the caller's deadline header set it (it was
   * earlier than the local one), else `'local'` (the guard's `timeout` or the route's).
   */
  get deadlineSource(): 'local' | 'inbound' {
    return (this.#flags & INBOUND) !== 0 ? 'inbound' : 'local'
  }

  /** The deadline as epoch milliseconds, or `Infinity` when the request has no timeout. */
  get deadline(): number {
    return this.#timeout === false ? Infinity : performance.timeOrigin + this.startTime + this.#timeout
  }

  /** Milliseconds since the guard saw the request (frozen once the request ended). */
  age(): number {
    return (this.#state === ENDED ? this.#endTime : performance.now()) - this.startTime
  }

  /** Milliseconds left before the deadline (0 once passed), or `Infinity` when there is none. */
  remaining(): number {
    if (this.#timeout === false) return Infinity
    const left = this.startTime + this.#timeout - performance.now()
    return left > 0 ? left : 0
  }

  /**
   * Changes this request's timeout, measured from when the guard saw the request, like a per-route
   * override. `false` removes the deadline (streaming routes); a deadline already passed fires at once.
   * A caller's deadline (`inboundDeadline`) earlier than `ms` stays in force: the earliest one wins.
   */
  setTimeout(ms: number | false): void {
    if (ms !== false && (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 1 || ms > MAX_TIMER)) {
      throw invalid('timeout', `an integer from 1 to ${MAX_TIMER} or \`false\``, ms)
    }
    if (this.#state !== OPEN) return
    this.#disarm()
    const inbound = this.#inbound
    let timeout: number | false = ms
    this.#flags &= ~(STREAMING | INBOUND)
    if (ms === false) this.#flags |= STREAMING
    if (inbound !== Infinity && (ms === false || inbound < ms)) {
      timeout = inbound
      this.#flags |= INBOUND
    }
    this.#timeout = timeout
    if (timeout !== false) this[kArm](timeout)
  }

  /** Throws the abort reason if the scope was aborted. */
  throwIfAborted(): void {
    if (this.#reason !== undefined) throw this.#reason
  }

  /**
   * Calls `fn(reason)` once when the scope aborts, without creating the AbortSignal. If the scope is
   * already aborted, `fn` is called on the next microtask. Returns a function that removes `fn`.
   */
  onAbort(fn: AbortHandler): () => void {
    if (typeof fn !== 'function') throw invalid('onAbort', 'a function', fn)
    if (this.#reason !== undefined) return this.#later(fn)
    const list = (this.#handlers ??= [])
    list.push(fn)
    // Once the abort took the list, removing is a no-op (and cannot disturb the fan-out in progress).
    return () => {
      if (this.#handlers === list) remove(list, fn)
    }
  }

  /**
   * @internal `onAbort` for leak-guard's own subscribers (pools, the HTTP client, the agent): they run
   * before the user's listeners, so a user listener can neither skip nor precede their cleanup.
   */
  [kSubscribe](fn: AbortHandler): () => void {
    if (this.#reason !== undefined) return this.#later(fn)
    const list = (this.#subscribers ??= [])
    list.push(fn)
    return () => {
      if (this.#subscribers === list) remove(list, fn)
    }
  }

  /** A listener added after the abort: called on the next microtask, unless removed first. */
  #later(fn: AbortHandler): () => void {
    const reason = this.#reason!
    let cancelled = false
    queueMicrotask(() => {
      if (!cancelled) fn(reason)
    })
    return () => {
      cancelled = true
    }
  }

  /**
   * Aborts the request's work with `reason` (the first reason wins). Use it to cancel a request from
   * outside, e.g. when a circuit opens; timeouts, disconnects and shutdown call it for you.
   */
  abort(reason: LeakGuardError): void {
    if (this.#reason !== undefined) return
    // 1. Bookkeeping: the scope's state is final before anyone hears of the abort.
    this.#reason = reason
    this.#abortTime = performance.now()
    if (this.#state === OPEN) this.#state = ABORTED
    this.#disarm()
    this.#notify(reason, true)
  }

  /**
   * Tells everyone who listens, in a fixed order, each isolated from the others' exceptions:
   * 2. leak-guard's own subscribers (pools, the HTTP client, the agent);
   * 3. the user's listeners: the signal's 'abort' listeners (Node's EventTarget isolates each one and
   *    reports its exception on the next tick), then the `onAbort` handlers (isolated the same way).
   * `signal: false` skips dispatching on the signal (see `#endNormally`).
   */
  #notify(reason: LeakGuardError, signal: boolean): void {
    const subscribers = this.#subscribers
    const handlers = this.#handlers
    this.#subscribers = this.#handlers = undefined
    callAll(subscribers, reason)
    if (signal) this.#controller?.abort(reason)
    callAll(handlers, reason)
  }

  /**
   * Runs `fn(signal)` as background work owned by this request: it is aborted when the request ends and,
   * if it is still running a grace period later, reported as a leak. The returned promise is already
   * marked handled, so a task nobody awaits cannot crash the process.
   */
  spawn<T>(fn: ScopedWork<T>): Promise<T> {
    if (typeof fn !== 'function') throw invalid('spawn', 'a function', fn)
    if (this.#reason !== undefined) {
      const rejected = Promise.reject(this.#reason)
      rejected.catch(markHandled)
      return rejected
    }
    const signal = this.signal
    let promise: Promise<T>
    try {
      promise = Promise.resolve(fn(signal))
    } catch (error) {
      promise = Promise.reject(error)
    }
    promise.catch(markHandled)
    const trace = this.#owner.captureStacks ? captureUserStack(RequestScope.prototype.spawn, Error.stackTraceLimit) : undefined
    const task: SpawnedTask = {
      promise,
      // Formatting a stack costs far more than capturing it: done only if a leak report or dump reads it.
      get stack() {
        return trace?.stack
      },
      startedAt: performance.now(),
    }
    const tasks = (this.#tasks ??= new Set())
    tasks.add(task)
    const settle = (): void => {
      tasks.delete(task)
    }
    promise.then(settle, settle)
    return promise
  }

  /**
   * Runs `fn(signal)` as work that must outlive the response (an audit write, a cache fill). It is not
   * aborted when the request ends but is tied to the server's lifetime: shutdown aborts it.
   */
  detach<T>(fn: ScopedWork<T>): Promise<T> {
    if (typeof fn !== 'function') throw invalid('detach', 'a function', fn)
    return this.#owner.detach(fn)
  }

  /** Background tasks started with `spawn` that have not settled yet. */
  get pendingTasks(): number {
    return this.#tasks?.size ?? 0
  }

  /** @internal Tasks for the live dump. */
  tasks(): readonly SpawnedTask[] {
    return this.#tasks === undefined ? [] : [...this.#tasks]
  }

  /** @internal The guard that owns this scope. */
  get [kOwner](): ScopeOwner {
    return this.#owner
  }

  /**
   * @internal Adds work started elsewhere (an outgoing call) to the tasks watched past the end; the
   * caller removes it with `kUntrack` when it settles (the set outlives the scope's end for that).
   */
  [kTrack](task: SpawnedTask): void {
    ;(this.#tasks ??= new Set()).add(task)
  }

  /** @internal Removes a task added with `kTrack`. */
  [kUntrack](task: SpawnedTask): void {
    this.#tasks?.delete(task)
  }

  /**
   * Settles with `promise`, or rejects as soon as the scope aborts for a reason that needs an answer
   * (timeout, shutdown) while the response can still be answered, so the caller can stop waiting. A
   * late settle of `promise` is swallowed (and reported as late work if it overran the grace period).
   * The answer itself is leak-guard's either way (the adapter's `ScopeHost`, or the raw answer).
   */
  race<T>(promise: PromiseLike<T>): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      let settled = false
      const dispose = this.onAbort((reason) => {
        if (settled) return
        if (!needsAnswer(reason)) {
          // A client that left or a request that ended needs no answer: keep waiting for the work,
          // which sees the aborted signal.
          return
        }
        settled = true
        const res = this.#res
        if (res !== undefined && !res.headersSent) {
          reject(reason)
        } else {
          resolve(undefined)
        }
      })
      promise.then(
        (value) => {
          if (settled) return this.reportLateSettle()
          settled = true
          dispose()
          resolve(value)
        },
        (error: unknown) => {
          if (settled) return this.reportLateSettle()
          settled = true
          dispose()
          reject(error)
        },
      )
    })
  }

  /**
   * Records that the request's handler settled after the request was aborted and answered (or its
   * client left). A handler that stops within `leakGracePeriod` of the abort honoured its signal; one
   * that settles later is reported as late work of kind `handler`. Adapters call it.
   */
  reportLateSettle(): void {
    if (this.#abortTime === 0 || performance.now() - this.#abortTime < this.#owner.leakGracePeriod) return
    this.#owner.reportLeak(this, 'handler')
  }

  /** Runs `fn` with this scope as the current one for `currentScope()`. */
  run<R>(fn: () => R): R {
    return storage.run(this, fn)
  }

  /** @internal (Re)arms the deadline timer for `timeout` ms after the start of the request. */
  [kArm](timeout: number): void {
    const left = this.startTime + timeout - performance.now()
    const timer = setTimeout(onDeadline, left > 0 ? left : 0, this)
    timer.unref()
    this.#timer = timer
  }

  /**
   * @internal Aborts with a reason that needs an answer and answers it: the deadline passed (no
   * `error` given) or shutdown's grace period ran out. If nothing was sent yet, the client gets the
   * error's status; if headers were already sent, the response is destroyed (Go's WriteTimeout).
   */
  [kAnswer](error: LeakGuardError | undefined): void {
    if (this.#state !== OPEN) return
    // Fully written and waiting for its 'close' (on HTTP/2 that waits for the client's end of stream
    // too): answered in time, so not a timeout; the close ends the scope.
    if (error === undefined && this.#res?.writableEnded === true) return
    if (this.#host?.handedOver?.(this.#ctx) === true) {
      if (error === undefined) {
        // The deadline passed on a hijacked response: it no longer has one (like `setTimeout(false)`).
        this.#disarm()
        this.#timeout = false
        this.#flags |= STREAMING
      } else {
        this.abort(error)
      }
      return
    }
    const answer = this.#owner.answer
    const reason = error ?? answer.timeout(this.#timeout as number)
    this.abort(reason)
    // The scope's listeners ran (a handler may have answered by itself); what is left to send, and how,
    // is decided in one place.
    const res = this.#res
    if (res !== undefined) deliver(this, res, reason, this.#host, this.#ctx, answer)
  }

  /**
   * @internal The response closed. `complete` is false when the client left before the end.
   *
   * The end is an ordered pipeline: 1. bookkeeping (reason, state, deadline, route, the guard's
   * registry and outcome counters, late-task watch), so that nothing a listener does can leave the
   * request in flight; then, if this end is what aborts the scope, 2. leak-guard's subscribers and
   * 3. the user's listeners (`#notify`), each isolated.
   */
  [kEnd](complete: boolean): void {
    if (this.#state === ENDED) return
    const now = performance.now()
    let reason = this.#reason
    const aborting = reason === undefined
    if (reason === undefined) {
      reason = this.#reason = complete ? requestEnded : new ClientClosedError()
      this.#abortTime = now
    }
    this.#disarm()
    if (this.#route === undefined && this.#res !== undefined) this.#route = this.#host?.routeOf?.(this.#ctx, this.#res)
    this.#state = ENDED
    this.#endTime = now
    this.#res = undefined
    this.#ctx = undefined
    let outcome: ScopeOutcome = 'ok'
    if (reason instanceof TimeoutError) outcome = 'timeout'
    else if (reason instanceof ClientClosedError) outcome = 'client-closed'
    else if (reason instanceof ShutdownError) outcome = 'shutdown'
    this.#owner.scopeEnded(this, outcome)
    const tasks = this.#tasks
    if (tasks !== undefined && tasks.size > 0) this.#owner.trackLateTasks(this, tasks)
    if (aborting) this.#notify(reason, reason !== requestEnded || this.#endWakesSignal())
    else this.#subscribers = this.#handlers = undefined
  }

  /**
   * The request finished normally: its work is cancelled with `LG_ERR_REQUEST_ENDED`, as Go cancels the
   * request context when `ServeHTTP` returns. The signal itself is aborted only if something listens to
   * it or background tasks are pending: on Node 20 dispatching an abort costs about 3 µs, more than the
   * rest of the scope, and a signal nobody listens to has nothing to cancel. A later read of
   * `scope.signal` still sees it aborted (the getter aborts it then), and `scope.aborted`/`reason`
   * say so at once.
   */
  #endWakesSignal(): boolean {
    const controller = this.#controller
    return controller !== undefined && ((this.#tasks?.size ?? 0) > 0 || getEventListeners(controller.signal, 'abort').length > 0)
  }

  /** Current state, for the live dump. */
  get state(): 'running' | 'aborted' | 'ended' {
    return this.#state === OPEN ? 'running' : this.#state === ABORTED ? 'aborted' : 'ended'
  }

  /** True when the route opted out of the deadline (`false`), e.g. for streaming. */
  get streaming(): boolean {
    return (this.#flags & STREAMING) !== 0
  }
}
