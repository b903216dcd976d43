import { AsyncResource } from 'node:async_hooks'
import { Agent, Client, Dispatcher, Pool, errors } from 'undici'
import { ClientQueueFullError, HttpClientClosedError, TimeoutError } from '../errors.js'
import { storage } from '../scope/context.js'
import type { RequestScope } from '../scope/request-scope.js'
import { stampDeadline, type DeadlineHeaderSpec } from '../timeout/deadline-header.js'
import { kAnswer, kSubscribe } from '../symbols.js'
import type { ResolvedHttpClientOptions } from './options.js'

/**
 * One origin's counters and its queue of calls waiting for a connection. leak-guard keeps this queue
 * itself instead of letting undici's pool queue the calls: undici would create a queued call's request
 * later, from inside another call's socket callbacks, so in the async context (AsyncLocalStorage) of
 * whichever request opened that socket — and `undici:request:create` subscribers (the outgoing-call
 * watcher) would blame the wrong request scope. Here a call is handed to undici only when fewer than
 * `connections` of the origin's calls are running, and a queued call is handed over in the async
 * context captured when it was made.
 */
export class OriginState {
  /** Calls accepted and not finished: running on (or connecting) a connection, or queued. */
  inFlight = 0
  /** Calls handed to undici and not finished. */
  running = 0
  /** Calls leak-guard aborted (request scope aborted or ended, timeout, caller's signal). */
  aborted = 0
  /** Calls refused because the queue was full. */
  rejected = 0
  readonly #connections: number
  readonly #send: (tracked: TrackedBase) => void
  readonly #onEmpty: () => void
  /** FIFO of calls waiting for a connection (a Set keeps insertion order and removes in O(1)). */
  readonly #waiting = new Set<TrackedBase>()
  #pumping = false

  constructor(connections: number, send: (tracked: TrackedBase) => void, onEmpty: () => void) {
    this.#connections = connections
    this.#send = send
    this.#onEmpty = onEmpty
  }

  /** Calls waiting in leak-guard's queue, not yet handed to undici. */
  get queued(): number {
    return this.#waiting.size
  }

  /** Hands `tracked` to undici now if a connection is free for it, or queues it. */
  admit(tracked: TrackedBase): void {
    if (this.running < this.#connections && this.#waiting.size === 0) {
      this.running++
      this.#send(tracked)
      return
    }
    tracked.context = new AsyncResource('leak-guard.http-client.call')
    this.#waiting.add(tracked)
  }

  /** Takes `tracked` out of the queue; false when it was not queued (already handed to undici). */
  remove(tracked: TrackedBase): boolean {
    if (!this.#waiting.delete(tracked)) return false
    if (this.#waiting.size === 0) this.#onEmpty()
    return true
  }

  /** A call finished; `sent` when it had been handed to undici, which frees its slot for the next one. */
  finished(sent: boolean): void {
    if (!sent) return
    this.running--
    if (this.#waiting.size > 0) this.pump()
  }

  /**
   * Hands queued calls to undici while fewer than `connections` run, each in the async context it was
   * made in. Not re-entered: a call that fails synchronously finishes inside `#send`, and the loop
   * that is already running picks up the freed slot.
   */
  pump(): void {
    if (this.#pumping) return
    this.#pumping = true
    try {
      while (this.running < this.#connections && this.#waiting.size > 0) {
        const tracked = this.#waiting.values().next().value as TrackedBase
        this.#waiting.delete(tracked)
        this.running++
        tracked.context!.runInAsyncScope(this.#send, undefined, tracked)
      }
    } finally {
      this.#pumping = false
    }
    if (this.#waiting.size === 0) this.#onEmpty()
  }

  /** Fails every queued call with `error` without sending it (the client is destroyed). */
  failQueued(error: unknown): void {
    const queued = [...this.#waiting]
    this.#waiting.clear()
    for (const tracked of queued) tracked.failUnsent(error)
    this.#onEmpty()
  }
}

/** What a tracked dispatch reports to: the `client.fetch()`/`client.request()` call it belongs to. */
export interface DispatchOwner {
  attach(handler: Tracked): void
  detach(handler: Tracked): void
  /** The request scope whose remaining time the call carries upstream, and in which header. */
  readonly deadlineScope: RequestScope | undefined
  readonly deadlineHeader: DeadlineHeaderSpec | false
}

export interface Tracked {
  countAbort(): void
  abort(reason: unknown): void
}

type AbortFn = (reason?: unknown) => void

/** undici's handler interface before 7 (`onConnect`/`onHeaders`/...), which its core, `fetch` and `request` use. */
interface LegacyHandler {
  onConnect?(abort: AbortFn, context?: unknown): void
  onResponseStarted?(): void
  onHeaders?(statusCode: number, headers: unknown, resume: () => void, statusText?: string): boolean
  onData?(chunk: Buffer): boolean
  onComplete?(trailers: unknown): void
  onError?(error: unknown): void
  onUpgrade?(statusCode: number, headers: unknown, socket: unknown): void
  onBodySent?(chunk: unknown): void
  onRequestSent?(): void
}

interface Controller {
  abort(reason?: unknown): void
}

/** undici 7's handler interface (`onRequestStart`/`onResponseStart`/...), used by interceptors. */
interface ModernHandler {
  onRequestStart?(controller: Controller, context: unknown): void
  onRequestUpgrade?(controller: Controller, statusCode: number, headers: unknown, socket: unknown): void
  onResponseStart?(controller: Controller, statusCode: number, headers: unknown, statusMessage?: string): void
  onResponseData?(controller: Controller, chunk: Buffer): void
  onResponseEnd?(controller: Controller, trailers: unknown): void
  onResponseError?(controller: Controller | undefined, error: unknown): void
}

interface DispatchOptions {
  origin?: string | URL
}

function originOf(opts: DispatchOptions | undefined): string {
  const origin = opts?.origin
  if (typeof origin === 'string') return origin
  if (origin instanceof URL) return origin.origin
  return 'unknown'
}

/**
 * Shared part of both handler wrappers: counts the dispatch in flight for its origin until it finishes,
 * and lets the owner abort it. An abort while the call waits in leak-guard's queue answers the caller at
 * once and drops the call unsent. An abort after it was handed to undici but before undici gave it a
 * connection (undici itself would only notice the abort once it connects) answers the caller and frees
 * the slot at once too; undici's request is then aborted as soon as it connects, or never created.
 */
export abstract class TrackedBase implements Tracked {
  /** Finished: the caller was answered (response ended, failed or aborted). */
  done = false
  /** Handed to undici. */
  sent = false
  /** The async context the call was made in, captured when it cannot be handed to undici at once. */
  context: AsyncResource | undefined = undefined
  /**
   * What undici gets, an object that identifies this call alone: the options `fetch`/`request` made for
   * this dispatch of a `client.fetch()`/`client.request()` (fresh objects), or a copy of the caller's.
   */
  readonly opts: Dispatcher.DispatchOptions
  /** The scope whose remaining time is put on the request when it is handed to undici, and the header. */
  deadlineScope: RequestScope | undefined = undefined
  deadlineHeader: DeadlineHeaderSpec | false = false
  protected early: unknown = undefined
  protected hasEarly = false
  #counted = false
  #state: OriginState
  #owner: DispatchOwner | undefined
  #disposeScope: (() => void) | undefined = undefined

  constructor(opts: Dispatcher.DispatchOptions, state: OriginState, owner: DispatchOwner | undefined) {
    this.opts = owner === undefined ? { ...opts } : opts
    this.#state = state
    this.#owner = owner
    state.inFlight++
    owner?.attach(this)
  }

  bindScope(dispose: () => void): void {
    this.#disposeScope = dispose
  }

  /** Counts this dispatch as aborted by leak-guard (once), before whatever aborts it runs. */
  countAbort(): void {
    if (this.done || this.#counted) return
    this.#counted = true
    this.#state.aborted++
  }

  abort(reason: unknown): void {
    if (this.done) return
    this.countAbort()
    if (this.sent && this.abortConnected(reason)) return
    this.failUnsent(reason)
  }

  /** Answers the caller with `error` before undici got the call (or before undici connected it). */
  failUnsent(error: unknown): void {
    if (this.done) return
    this.hasEarly = true
    this.early = error
    this.finish()
    this.failEarly(error)
  }

  protected finish(): boolean {
    if (this.done) return false
    this.done = true
    this.context = undefined
    const state = this.#state
    state.inFlight--
    if (!this.sent) state.remove(this)
    this.#owner?.detach(this)
    if (this.#disposeScope !== undefined) {
      this.#disposeScope()
      this.#disposeScope = undefined
    }
    state.finished(this.sent)
    return true
  }

  /** Aborts through undici when the request has a connection; false when it is still waiting for one. */
  protected abstract abortConnected(reason: unknown): boolean
  protected abstract failEarly(reason: unknown): void
}

class TrackedLegacy extends TrackedBase implements LegacyHandler {
  #inner: LegacyHandler
  #abort: AbortFn | undefined = undefined

  constructor(inner: LegacyHandler, opts: Dispatcher.DispatchOptions, state: OriginState, owner: DispatchOwner | undefined) {
    super(opts, state, owner)
    this.#inner = inner
  }

  protected abortConnected(reason: unknown): boolean {
    if (this.#abort === undefined) return false
    // undici answers with onError(reason), which finishes this dispatch.
    this.#abort(reason)
    return true
  }

  protected failEarly(reason: unknown): void {
    this.#inner.onError?.(reason)
  }

  onConnect(abort: AbortFn, context?: unknown): void {
    if (this.hasEarly) {
      abort(this.early)
      return
    }
    this.#abort = abort
    this.#inner.onConnect?.(abort, context)
  }

  onResponseStarted(): void {
    if (!this.done) this.#inner.onResponseStarted?.()
  }

  onHeaders(statusCode: number, headers: unknown, resume: () => void, statusText?: string): boolean {
    return this.#inner.onHeaders?.(statusCode, headers, resume, statusText) ?? true
  }

  onData(chunk: Buffer): boolean {
    return this.#inner.onData?.(chunk) ?? true
  }

  onComplete(trailers: unknown): void {
    // Finish first: code that runs from the inner handler may dispatch again and must see the slot free.
    if (this.finish()) this.#inner.onComplete?.(trailers)
  }

  onError(error: unknown): void {
    if (this.finish()) this.#inner.onError?.(error)
  }

  onUpgrade(statusCode: number, headers: unknown, socket: unknown): void {
    if (this.finish()) this.#inner.onUpgrade?.(statusCode, headers, socket)
  }

  onBodySent(chunk: unknown): void {
    this.#inner.onBodySent?.(chunk)
  }

  onRequestSent(): void {
    this.#inner.onRequestSent?.()
  }
}

const deadController: Controller = { abort() {} }

class TrackedModern extends TrackedBase implements ModernHandler {
  #inner: ModernHandler
  #controller: Controller | undefined = undefined

  constructor(inner: ModernHandler, opts: Dispatcher.DispatchOptions, state: OriginState, owner: DispatchOwner | undefined) {
    super(opts, state, owner)
    this.#inner = inner
  }

  protected abortConnected(reason: unknown): boolean {
    if (this.#controller === undefined) return false
    this.#controller.abort(reason)
    return true
  }

  protected failEarly(reason: unknown): void {
    this.#inner.onResponseError?.(deadController, reason)
  }

  onRequestStart(controller: Controller, context: unknown): void {
    if (this.hasEarly) {
      controller.abort(this.early)
      return
    }
    this.#controller = controller
    this.#inner.onRequestStart?.(controller, context)
  }

  onRequestUpgrade(controller: Controller, statusCode: number, headers: unknown, socket: unknown): void {
    if (this.finish()) this.#inner.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart(controller: Controller, statusCode: number, headers: unknown, statusMessage?: string): void {
    this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.#inner.onResponseData?.(controller, chunk)
  }

  onResponseEnd(controller: Controller, trailers: unknown): void {
    if (this.finish()) this.#inner.onResponseEnd?.(controller, trailers)
  }

  onResponseError(controller: Controller, error: unknown): void {
    if (this.finish()) this.#inner.onResponseError?.(controller, error)
  }
}

function fail(handler: LegacyHandler & ModernHandler, error: unknown): false {
  if (typeof handler.onRequestStart === 'function') handler.onResponseError?.(deadController, error)
  else handler.onError?.(error)
  return false
}

/**
 * A call whose request has less than a millisecond left is not sent: the request's deadline is due, so
 * it expires now (503 and `TimeoutError`, which also aborts this call through the scope's listener);
 * the call is failed with that reason if nothing else answered it.
 */
function expireUnsent(tracked: TrackedBase, scope: RequestScope): void {
  scope[kAnswer](undefined)
  if (!tracked.done) tracked.failUnsent(scope.reason ?? new TimeoutError(scope.timeout === false ? 0 : scope.timeout))
}

/**
 * The call being handed to undici right now (set around `agent.dispatch()`), so `ContextClient` can tell
 * whether undici created its request synchronously or kept it in the pool's own queue.
 */
let sending: object | undefined
/**
 * Calls with a modern handler that undici's pool kept in its queue, by the `opts` object undici hands
 * back when it dispatches them (undici wraps such handlers, so the handler the Client gets is not
 * ours). A legacy handler (`fetch`, `request`) reaches the Client as it is: it is found by identity.
 */
const lagging = new WeakMap<object, TrackedBase>()

/**
 * undici's `Client` (one connection), creating requests the pool had to queue in the async context of
 * the call that made them. With pipelining 1 undici frees a connection one event-loop turn after its
 * response ended, so a call handed over as soon as a slot frees (see `OriginState`) can still land in
 * the pool's queue for that turn; the pool then dispatches it from the freed socket's callbacks.
 */
class ContextClient extends Client {
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (opts === sending) {
      sending = undefined
      return super.dispatch(opts, handler)
    }
    let tracked: TrackedBase | undefined
    if (handler instanceof TrackedBase) tracked = handler
    else {
      tracked = lagging.get(opts)
      if (tracked === undefined) return super.dispatch(opts, handler)
      lagging.delete(opts)
    }
    // Aborted while the pool held it: its caller was answered; never create the request.
    if (tracked.done) return true
    const context = tracked.context
    if (context === undefined) return super.dispatch(opts, handler)
    return context.runInAsyncScope(super.dispatch, this, opts, handler)
  }
}

function createConnection(origin: URL, opts: object): Dispatcher {
  return new ContextClient(origin, opts)
}

/** The Agent's factory: undici's default (a Client for one connection, else a Pool) built on `ContextClient`. */
function createOriginPool(origin: string | URL, opts: object): Dispatcher {
  return (opts as { connections?: number }).connections === 1
    ? new ContextClient(origin, opts)
    : new Pool(origin, { ...opts, factory: createConnection })
}

/**
 * An undici Dispatcher in front of a bounded `Agent`: counts the calls in flight per origin, queues the
 * ones beyond `connections` itself (see `OriginState`), refuses calls beyond `connections + maxQueue` at
 * once with `ClientQueueFullError`, and lets each call be aborted by its owner. Dispatches that arrive
 * without an owner (the global `fetch` after `installGlobal()`) are tied to the current request scope,
 * if any.
 */
export class BoundedDispatcher extends Dispatcher {
  readonly agent: Agent
  #connections: number
  #limit: number
  #maxQueue: number | false
  #origins = new Map<string, OriginState>()
  #lastOrigin: string | undefined = undefined
  #lastState: OriginState | undefined = undefined
  #closing: Promise<void> | undefined = undefined
  #destroying: Promise<void> | undefined = undefined
  #destroyed = false
  #queuesEmpty: (() => void) | undefined = undefined
  #send = (tracked: TrackedBase): void => this.#handOver(tracked)
  #onEmpty = (): void => this.#checkQueuesEmpty()
  #deadlineHeader: DeadlineHeaderSpec | false

  constructor(options: ResolvedHttpClientOptions) {
    super()
    this.#deadlineHeader = options.deadlineHeader
    this.#connections = options.connections
    this.#maxQueue = options.maxQueue
    this.#limit = options.maxQueue === false ? Infinity : options.connections + options.maxQueue
    this.agent = new Agent({
      factory: createOriginPool,
      connections: options.connections,
      pipelining: 1,
      keepAliveTimeout: options.keepAliveTimeout,
      // Caps the upstream's `Keep-Alive: timeout` hint too, so an idle socket is never kept past ours.
      keepAliveMaxTimeout: options.keepAliveTimeout,
      headersTimeout: options.headersTimeout,
      bodyTimeout: options.bodyTimeout,
      connect: { ...options.connect, timeout: options.connectTimeout },
    })
  }

  /** Counters per origin (live objects; copy before handing out). */
  origins(): ReadonlyMap<string, Readonly<OriginState>> {
    return this.#origins
  }

  #state(origin: string): OriginState {
    // Most clients talk to one origin: comparing with the last one is cheaper than hashing the fresh
    // origin string undici builds for every call.
    if (origin === this.#lastOrigin) return this.#lastState!
    let state = this.#origins.get(origin)
    if (state === undefined) {
      state = new OriginState(this.#connections, this.#send, this.#onEmpty)
      this.#origins.set(origin, state)
    }
    this.#lastOrigin = origin
    this.#lastState = state
    return state
  }

  /** Gives a call to undici, in the current async context (the caller's, or the one captured when queued). */
  #handOver(tracked: TrackedBase): void {
    tracked.sent = true
    const opts = tracked.opts
    // The remaining time is measured here, when the call gets a connection, not when it was queued.
    const deadlineScope = tracked.deadlineScope
    if (deadlineScope !== undefined && !stampDeadline(opts, tracked.deadlineHeader as DeadlineHeaderSpec, deadlineScope.remaining())) {
      // Not from inside this dispatch: undici's fetch may be dispatching synchronously and cannot be
      // aborted before its own fetch() call has returned.
      queueMicrotask(() => expireUnsent(tracked, deadlineScope))
      return
    }
    const outer = sending
    sending = opts
    try {
      this.agent.dispatch(opts, tracked as unknown as Dispatcher.DispatchHandler)
    } finally {
      const kept = sending === opts
      sending = outer
      if (kept && !tracked.done) {
        tracked.context ??= new AsyncResource('leak-guard.http-client.call')
        if (!(tracked instanceof TrackedLegacy)) lagging.set(opts, tracked)
      } else if (!kept) {
        tracked.context = undefined
      }
    }
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.dispatchOwned(opts, handler as LegacyHandler & ModernHandler, undefined)
  }

  /** Dispatches on behalf of `owner` (a `client.fetch()`/`client.request()` call), or of the current scope. */
  dispatchOwned(opts: Dispatcher.DispatchOptions, handler: LegacyHandler & ModernHandler, owner: DispatchOwner | undefined): boolean {
    if (this.#destroyed || this.#closing !== undefined) return fail(handler, new HttpClientClosedError())
    const origin = originOf(opts)
    const state = this.#state(origin)
    if (state.inFlight >= this.#limit) {
      state.rejected++
      return fail(handler, new ClientQueueFullError(origin, this.#maxQueue as number))
    }
    let scope
    if (owner === undefined) {
      scope = storage.getStore()
      if (scope !== undefined && scope.aborted) return fail(handler, scope.reason)
    }
    const tracked =
      typeof handler.onRequestStart === 'function'
        ? new TrackedModern(handler, opts, state, owner)
        : new TrackedLegacy(handler, opts, state, owner)
    if (scope !== undefined) tracked.bindScope(scope[kSubscribe]((reason) => tracked.abort(reason)))
    const deadlineScope = owner === undefined ? scope : owner.deadlineScope
    const header = owner === undefined ? this.#deadlineHeader : owner.deadlineHeader
    if (deadlineScope !== undefined && header !== false) {
      tracked.deadlineScope = deadlineScope
      tracked.deadlineHeader = header
    }
    state.admit(tracked)
    return true
  }

  #checkQueuesEmpty(): void {
    const resolve = this.#queuesEmpty
    if (resolve === undefined) return
    for (const state of this.#origins.values()) if (state.queued > 0) return
    this.#queuesEmpty = undefined
    resolve()
  }

  /** Stops taking calls, hands every queued call to undici as connections free up, then closes the Agent. */
  #close(): Promise<void> {
    if (this.#closing === undefined) {
      const queuesEmpty = new Promise<void>((resolve) => {
        this.#queuesEmpty = resolve
      })
      this.#closing = queuesEmpty.then(() => this.#destroying ?? this.agent.close())
      this.#checkQueuesEmpty()
    }
    return this.#closing
  }

  /** Fails every queued call with `error` (undici's `ClientDestroyedError` by default) and destroys the Agent. */
  #destroy(error: Error | null): Promise<void> {
    if (this.#destroying === undefined) {
      // Refuse new calls first: callers answered below may try again from their error handlers.
      this.#destroyed = true
      const reason = error ?? new errors.ClientDestroyedError()
      for (const state of this.#origins.values()) state.failQueued(reason)
      this.#destroying = this.agent.destroy(error)
    }
    return this.#destroying
  }

  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    const promise = this.#close()
    if (callback === undefined) return promise
    promise.then(callback, callback)
  }

  override destroy(): Promise<void>
  override destroy(error: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(error: Error | null, callback: () => void): void
  override destroy(errorOrCallback?: Error | null | (() => void), callback?: () => void): Promise<void> | void {
    const error = typeof errorOrCallback === 'function' ? null : (errorOrCallback ?? null)
    const cb = typeof errorOrCallback === 'function' ? errorOrCallback : callback
    const promise = this.#destroy(error)
    if (cb === undefined) return promise
    promise.then(cb, cb)
  }
}
