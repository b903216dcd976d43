import { Agent, Dispatcher } from 'undici'
import { ClientQueueFullError } from '../errors.js'
import { storage } from '../scope/context.js'
import type { ResolvedHttpClientOptions } from './options.js'

/** Per-origin counters kept by leak-guard itself: undici has no bound on its queue. */
export interface OriginState {
  /** Calls dispatched and not yet finished: running on a connection or waiting for one. */
  inFlight: number
  /** Calls leak-guard aborted (request scope aborted or ended, timeout, caller's signal). */
  aborted: number
  /** Calls refused because the queue was full. */
  rejected: number
}

/** What a tracked dispatch reports to: the `client.fetch()`/`client.request()` call it belongs to. */
export interface DispatchOwner {
  attach(handler: Tracked): void
  detach(handler: Tracked): void
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
 * and lets the owner abort it. An abort before undici handed the request a connection (it is still in
 * undici's queue, where undici itself would only notice the abort once a connection frees up) answers
 * the caller and frees the queue slot at once; the queued entry is dropped unsent when its turn comes.
 */
abstract class TrackedBase implements Tracked {
  protected done = false
  protected early: unknown = undefined
  protected hasEarly = false
  #counted = false
  #state: OriginState
  #owner: DispatchOwner | undefined
  #disposeScope: (() => void) | undefined = undefined

  constructor(state: OriginState, owner: DispatchOwner | undefined) {
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
    if (this.abortConnected(reason)) return
    this.hasEarly = true
    this.early = reason
    this.finish()
    this.failEarly(reason)
  }

  protected finish(): boolean {
    if (this.done) return false
    this.done = true
    this.#state.inFlight--
    this.#owner?.detach(this)
    if (this.#disposeScope !== undefined) {
      this.#disposeScope()
      this.#disposeScope = undefined
    }
    return true
  }

  /** Aborts through undici when the request has a connection; false when it is still queued. */
  protected abstract abortConnected(reason: unknown): boolean
  protected abstract failEarly(reason: unknown): void
}

class TrackedLegacy extends TrackedBase implements LegacyHandler {
  #inner: LegacyHandler
  #abort: AbortFn | undefined = undefined

  constructor(inner: LegacyHandler, state: OriginState, owner: DispatchOwner | undefined) {
    super(state, owner)
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

  constructor(inner: ModernHandler, state: OriginState, owner: DispatchOwner | undefined) {
    super(state, owner)
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
 * An undici Dispatcher in front of a bounded `Agent`: counts the calls in flight per origin, refuses
 * calls beyond `connections + maxQueue` at once with `ClientQueueFullError`, and lets each call be
 * aborted by its owner. Dispatches that arrive without an owner (the global `fetch` after
 * `installGlobal()`) are tied to the current request scope, if any.
 */
export class BoundedDispatcher extends Dispatcher {
  readonly agent: Agent
  #limit: number
  #maxQueue: number | false
  #origins = new Map<string, OriginState>()

  constructor(options: ResolvedHttpClientOptions) {
    super()
    this.#maxQueue = options.maxQueue
    this.#limit = options.maxQueue === false ? Infinity : options.connections + options.maxQueue
    this.agent = new Agent({
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
    let state = this.#origins.get(origin)
    if (state === undefined) {
      state = { inFlight: 0, aborted: 0, rejected: 0 }
      this.#origins.set(origin, state)
    }
    return state
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.dispatchOwned(opts, handler as LegacyHandler & ModernHandler, undefined)
  }

  /** Dispatches on behalf of `owner` (a `client.fetch()`/`client.request()` call), or of the current scope. */
  dispatchOwned(opts: Dispatcher.DispatchOptions, handler: LegacyHandler & ModernHandler, owner: DispatchOwner | undefined): boolean {
    const origin = originOf(opts as DispatchOptions)
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
      typeof handler.onRequestStart === 'function' ? new TrackedModern(handler, state, owner) : new TrackedLegacy(handler, state, owner)
    if (scope !== undefined) tracked.bindScope(scope.onAbort((reason) => tracked.abort(reason)))
    return this.agent.dispatch(opts, tracked as unknown as Dispatcher.DispatchHandler)
  }

  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    const promise = this.agent.close()
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
    const promise = this.agent.destroy(error)
    if (cb === undefined) return promise
    promise.then(cb, cb)
  }
}
