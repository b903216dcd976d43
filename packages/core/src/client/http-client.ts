import {
  fetch as undiciFetch,
  getGlobalDispatcher,
  request as undiciRequest,
  setGlobalDispatcher,
  type Dispatcher,
  type RequestInfo,
  type RequestInit,
  type Response,
} from 'undici'
import { ClientQueueFullError, ClientTimeoutError, HttpClientClosedError } from '../errors.js'
import { invalid } from '../options.js'
import { storage } from '../scope/context.js'
import type { RequestScope } from '../scope/request-scope.js'
import { kSubscribe } from '../symbols.js'
import { DeadlineList, kDeadline, kList, kNext, kPrev } from '../timeout/deadline-list.js'
import { resolveDeadlineHeader, type DeadlineHeaderSpec, type OutboundDeadlineHeader } from '../timeout/deadline-header.js'
import { BoundedDispatcher, type DispatchOwner, type Tracked } from './bounded-dispatcher.js'
import { resolveHttpClientOptions, type HttpClientOptions, type ResolvedHttpClientOptions } from './options.js'

/** Per-call options accepted by `client.fetch()` (in `init`) and `client.request()`. */
export interface CallOptions {
  /**
   * Deadline of this call in milliseconds, or `false` for none; overrides the client's `timeout`. The
   * request scope's remaining time still caps it.
   */
  timeout?: number | false
  /**
   * The request scope this call belongs to, for code that runs with `context: false`; `false` detaches
   * the call from the current scope. By default the scope of the running request (`currentScope()`).
   */
  scope?: RequestScope | false
  /**
   * The header carrying the request's remaining time to the upstream for this call; overrides the
   * client's `deadlineHeader` (`'connect'`, `'grpc'`, `'envoy'`, `{ name }`, or `false` for none).
   */
  deadlineHeader?: OutboundDeadlineHeader
}

export type HttpClientFetchInit = RequestInit & CallOptions
export type HttpClientRequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method' | 'dispatcher'> &
  Partial<Pick<Dispatcher.RequestOptions, 'method' | 'path'>> &
  CallOptions
export type HttpClientResponseData = Dispatcher.ResponseData

/** Connection and call counts of one origin. */
export interface OriginStats {
  /** Connections open to the origin (busy or idle). */
  open: number
  /** Calls running on a connection. */
  busy: number
  /** Calls waiting for a connection. */
  queued: number
  /** Calls leak-guard aborted: request scope aborted or ended, timeout, caller's signal. */
  aborted: number
  /** Calls refused with `LG_ERR_CLIENT_QUEUE_FULL`. */
  rejected: number
}

function onCallTimeout(call: Call, timeout: number): void {
  call.abort(new ClientTimeoutError(timeout))
}

/**
 * One `client.fetch()`/`client.request()`: listens to the request scope, the caller's signal and its own
 * timer, and removes every listener as soon as it settles (the response body was received, the call
 * failed, or it was aborted). One listener per call on a caller's long-lived signal, removed again,
 * instead of `AbortSignal.any()`, whose listeners on long-lived signals leak on Node 20
 * (nodejs/node#55351).
 *
 * It is also the `dispatcher` handed to undici's `fetch`/`request`, which is how its dispatches (one per
 * redirect hop for `fetch`) are linked to it, and how it aborts them: through undici's own abort of
 * each dispatch, so `request()` needs no AbortSignal at all. `fetch()` gets a per-call signal only when
 * a request scope or a caller's signal may abort it (then fetch rejects, and a half-read body errors,
 * with that reason itself); giving undici's fetch any signal costs it about 10 µs per call.
 */
class Call implements DispatchOwner {
  aborted = false
  reason: unknown = undefined
  readonly controller: AbortController | undefined
  #dispatcher: BoundedDispatcher
  /** The dispatch running for this call; a second one (a redirect hop overlapping) goes to `#more`. */
  #tracked: Tracked | undefined = undefined
  #more: Tracked[] | undefined = undefined
  #returned = false
  #settled = false
  #timer: NodeJS.Timeout | undefined = undefined
  #deadlines: DeadlineList<Call> | undefined = undefined;
  /** @internal Links of the client's deadline list (calls on the client's default timeout). */
  [kDeadline] = 0;
  [kList]: DeadlineList<never> | undefined = undefined;
  [kPrev]: Call | undefined = undefined;
  [kNext]: Call | undefined = undefined
  #disposeScope: (() => void) | undefined = undefined
  #signal: AbortSignal | undefined = undefined
  /** The scope whose remaining time each dispatch of this call carries, and in which header. */
  deadlineScope: RequestScope | undefined = undefined
  deadlineHeader: DeadlineHeaderSpec | false = false

  constructor(dispatcher: BoundedDispatcher, withController: boolean) {
    this.#dispatcher = dispatcher
    this.controller = withController ? new AbortController() : undefined
  }

  start(scope: RequestScope | undefined, timeout: number | false, signal: AbortSignal | undefined, deadlines: DeadlineList<Call> | undefined, header: DeadlineHeaderSpec | false): void {
    let remaining = Infinity
    if (scope !== undefined) {
      remaining = scope.remaining()
      if (header !== false && remaining !== Infinity) {
        this.deadlineScope = scope
        this.deadlineHeader = header
      }
      this.#disposeScope = scope[kSubscribe]((reason) => this.abort(reason))
    }
    // When the request's deadline comes first, no timer of ours: the scope's own timer aborts the call
    // with the request's TimeoutError, which is the reason the caller should see.
    if (timeout !== false && timeout < remaining) {
      if (deadlines !== undefined) {
        this.#deadlines = deadlines
        deadlines.add(this)
      } else {
        const timer = setTimeout(onCallTimeout, timeout, this, timeout)
        timer.unref()
        this.#timer = timer
      }
    }
    if (signal !== undefined) {
      this.#signal = signal
      signal.addEventListener('abort', this, { once: true })
    }
  }

  /** The caller's signal aborted (EventListener object: no closure per call). */
  handleEvent(): void {
    this.abort(this.#signal?.reason)
  }

  /** Called by undici's `fetch`/`request` with this object as their dispatcher. */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h = handler as { onError?(e: unknown): void }
    if (this.aborted) {
      h.onError?.(this.reason)
      return false
    }
    return this.#dispatcher.dispatchOwned(opts, handler as never, this)
  }

  attach(tracked: Tracked): void {
    if (this.#tracked === undefined) this.#tracked = tracked
    else (this.#more ??= []).push(tracked)
  }

  detach(tracked: Tracked): void {
    if (this.#tracked === tracked) this.#tracked = this.#more?.shift()
    else if (this.#more !== undefined) {
      const index = this.#more.indexOf(tracked)
      if (index !== -1) this.#more.splice(index, 1)
    }
    if (this.#returned && this.#tracked === undefined) this.settle()
  }

  /** The call's promise settled (or, for `request()`, its only dispatch was made); listeners go once no dispatch of it is left running. */
  returned(): void {
    this.#returned = true
    if (this.#tracked === undefined) this.settle()
  }

  /**
   * The error `fetch()` rejects with: the abort reason if we aborted (fetch wraps it in
   * `TypeError('fetch failed')` when it had no signal of ours), our own coded error unwrapped from
   * fetch's TypeError.
   */
  failed(error: unknown): unknown {
    this.returned()
    if (this.aborted) return this.reason
    const cause = (error as { cause?: unknown } | null)?.cause
    if (error instanceof TypeError && cause instanceof ClientQueueFullError) return cause
    return error
  }

  abort(reason: unknown): void {
    if (this.aborted || this.#settled) return
    this.aborted = true
    this.reason = reason
    const first = this.#tracked
    const tracked = this.#more === undefined || this.#more.length === 0 ? (first === undefined ? [] : [first]) : [first!, ...this.#more]
    for (const t of tracked) t.countAbort()
    // fetch first, so it rejects with `reason` itself; its abort usually finishes the dispatches too.
    this.controller?.abort(reason)
    for (const t of tracked) t.abort(reason)
    this.settle()
  }

  settle(): void {
    if (this.#settled) return
    this.#settled = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#deadlines?.remove(this)
    this.#disposeScope?.()
    this.#signal?.removeEventListener('abort', this)
  }
}

function callTimeout(value: unknown, fallback: number | false): number | false {
  if (value === undefined) return fallback
  if (value === false || (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= 2_147_483_647)) return value
  throw invalid('timeout', 'a positive integer or `false`', value)
}

function callScope(value: unknown): RequestScope | undefined {
  if (value === undefined) return storage.getStore()
  return value === false ? undefined : (value as RequestScope)
}

/**
 * A bounded outgoing HTTP client on undici: a capped number of connections per origin, a capped queue
 * for calls waiting for one, connect/headers/body timeouts, and calls that carry the current request's
 * signal and remaining deadline. Create one per upstream service (or one per app) at startup.
 */
export class HttpClient {
  readonly options: Readonly<ResolvedHttpClientOptions>
  #dispatcher: BoundedDispatcher
  #timeout: number | false
  /** Calls running under the client's own `timeout` (not a per-call one). */
  #deadlines: DeadlineList<Call> | undefined
  #closing: Promise<void> | undefined = undefined
  #destroying: Promise<void> | undefined = undefined
  #unregister: (() => void) | undefined = undefined
  #restoreGlobal: (() => void) | undefined = undefined

  constructor(options?: HttpClientOptions) {
    const resolved = resolveHttpClientOptions(options)
    this.options = Object.freeze(resolved)
    this.#timeout = resolved.timeout
    this.#deadlines = resolved.timeout === false ? undefined : new DeadlineList<Call>(resolved.timeout, (call) => onCallTimeout(call, resolved.timeout as number))
    this.#dispatcher = new BoundedDispatcher(resolved)
    if (resolved.guard !== undefined) this.#unregister = resolved.guard.register(this)
  }

  /**
   * The bounded undici dispatcher, for undici APIs this client does not wrap (`stream`, `pipeline`,
   * `undici.fetch(url, { dispatcher })`). Its calls are bounded and tied to the current request scope,
   * but get no per-call timeout.
   */
  get dispatcher(): Dispatcher {
    return this.#dispatcher
  }

  /**
   * WHATWG `fetch` through the bounded pool. Inside a request it is aborted when the request times out,
   * its client disconnects, the server shuts down, or the request ends with the body still unread; it
   * then rejects (or its body errors) with the request's reason (`LG_ERR_TIMEOUT`,
   * `LG_ERR_CLIENT_CLOSED`, `LG_ERR_SHUTDOWN`, `LG_ERR_REQUEST_ENDED`). `init.signal` is honoured too.
   * A full queue rejects with `LG_ERR_CLIENT_QUEUE_FULL`, a closed client with `LG_ERR_CLIENT_HTTP_CLOSED`,
   * the client's own timeout with `LG_ERR_CLIENT_TIMEOUT`; upstream failures keep fetch's `TypeError`
   * with undici's error as `cause`.
   * Outside a request and without `init.signal`, fetch is given no AbortSignal (it costs undici's fetch
   * about 10 µs per call): a body still being read when the client's timeout fires then errors with
   * fetch's `TypeError('terminated')` whose `cause` is the `LG_ERR_CLIENT_TIMEOUT` error.
   */
  fetch(input: RequestInfo, init?: HttpClientFetchInit): Promise<Response> {
    let call: Call
    let fetchInit: RequestInit
    if (this.closed) return Promise.reject(new HttpClientClosedError())
    try {
      const scope = callScope(init?.scope)
      const timeout = callTimeout(init?.timeout, this.#timeout)
      const own = init?.signal
      const signal = own !== undefined ? own : typeof input === 'object' && input !== null && 'signal' in input ? input.signal : undefined
      if (scope !== undefined && scope.aborted) return Promise.reject(scope.reason)
      if (signal?.aborted) return Promise.reject(signal.reason)
      const header = resolveDeadlineHeader(init?.deadlineHeader, this.options.deadlineHeader)
      // A signal of our own only when something may abort the call with a reason fetch should reject
      // (and error a half-read body) with; the client's timeout alone aborts the dispatch instead.
      const withController = scope !== undefined || (signal !== undefined && signal !== null)
      call = new Call(this.#dispatcher, withController)
      call.start(scope, timeout, signal ?? undefined, timeout === this.#timeout ? this.#deadlines : undefined, header)
      fetchInit = withController
        ? { ...init, signal: call.controller!.signal, dispatcher: call as unknown as Dispatcher }
        : init === undefined
          ? { dispatcher: call as unknown as Dispatcher }
          : { ...init, dispatcher: call as unknown as Dispatcher }
    } catch (error) {
      return Promise.reject(error)
    }
    let promise: Promise<Response>
    try {
      promise = undiciFetch(input, fetchInit)
    } catch (error) {
      return Promise.reject(call.failed(error))
    }
    return promise.then(
      (response) => {
        call.returned()
        return response
      },
      (error: unknown) => {
        throw call.failed(error)
      },
    )
  }

  /**
   * undici's `request()` through the bounded pool, with the same scope, signal and timeout handling as
   * `fetch`. Always consume or cancel `body`; one still unread when the request ends is destroyed so
   * its connection is freed.
   */
  request(url: string | URL, options?: HttpClientRequestOptions): Promise<HttpClientResponseData> {
    let call: Call
    let opts: Record<string, unknown>
    if (this.closed) return Promise.reject(new HttpClientClosedError())
    try {
      const scope = callScope(options?.scope)
      const timeout = callTimeout(options?.timeout, this.#timeout)
      const signal = (options?.signal ?? undefined) as AbortSignal | undefined
      if (scope !== undefined && scope.aborted) return Promise.reject(scope.reason)
      if (signal?.aborted) return Promise.reject(signal.reason)
      const header = resolveDeadlineHeader(options?.deadlineHeader, this.options.deadlineHeader)
      call = new Call(this.#dispatcher, false)
      call.start(scope, timeout, signal, timeout === this.#timeout ? this.#deadlines : undefined, header)
      // The call aborts undici's request itself (no AbortSignal needed), so the caller's signal is not passed on.
      if (options === undefined) opts = { dispatcher: call }
      else {
        // Rest, not `{ ...options, signal: undefined, ... }`: overwriting the copied fields made every call
        // that passed options ~6 µs slower on Node 20 (measured; V8 object-shape changes, presumably).
        const { signal: _signal, timeout: _timeout, scope: _scope, deadlineHeader: _header, ...rest } = options as Record<string, unknown>
        rest.dispatcher = call
        opts = rest
      }
    } catch (error) {
      return Promise.reject(error)
    }
    let promise: Promise<HttpClientResponseData>
    try {
      promise = undiciRequest(url, opts as never)
    } catch (error) {
      return Promise.reject(call.failed(error))
    }
    // undici's request() dispatches synchronously, at most once, and rejects with the reason the call
    // aborted its dispatch with: nothing to map, so its promise is returned as is. The call settles when
    // that dispatch finishes (or now, if it was never made).
    call.returned()
    return promise
  }

  /**
   * Makes Node's global `fetch` (and undici's default dispatcher) use this client's bounded pool:
   * connection and queue limits apply, and calls made inside a request are aborted with it (the global
   * `fetch` then rejects with `TypeError('fetch failed')` whose `cause` is the reason). The client's own
   * `timeout` does not apply there. Returns a function that restores the previous dispatcher; `close()`
   * restores it too.
   */
  installGlobal(): () => void {
    if (this.#restoreGlobal !== undefined) return this.#restoreGlobal
    if (this.closed) throw new HttpClientClosedError()
    const previous = getGlobalDispatcher()
    setGlobalDispatcher(this.#dispatcher)
    const restore = (): void => {
      if (this.#restoreGlobal !== restore) return
      this.#restoreGlobal = undefined
      if (getGlobalDispatcher() === this.#dispatcher) setGlobalDispatcher(previous)
    }
    this.#restoreGlobal = restore
    return restore
  }

  /** Undoes `installGlobal()`. Safe to call when not installed. */
  uninstallGlobal(): void {
    this.#restoreGlobal?.()
  }

  /** Counts per origin: open connections, busy, queued, aborted and rejected calls. */
  stats(): Record<string, OriginStats> {
    const pools = this.#dispatcher.agent.stats as Record<string, { connected: number; running: number }>
    const result: Record<string, OriginStats> = {}
    for (const [origin, state] of this.#dispatcher.origins()) {
      const pool = pools[origin]
      result[origin] = {
        open: pool?.connected ?? 0,
        busy: pool?.running ?? 0,
        queued: state.queued,
        aborted: state.aborted,
        rejected: state.rejected,
      }
    }
    return result
  }

  /** True once `close()` or `destroy()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined || this.#destroying !== undefined
  }

  /**
   * Stops taking calls, lets the running and queued ones finish, then closes every connection. Calls
   * made afterwards (`fetch`, `request`, `installGlobal`, calls through `dispatcher`) fail with
   * `HttpClientClosedError` (`LG_ERR_CLIENT_HTTP_CLOSED`). Idempotent; the guard calls it at shutdown.
   */
  close(): Promise<void> {
    if (this.#destroying !== undefined) return this.#destroying
    if (this.#closing === undefined) {
      this.#release()
      this.#closing = this.#dispatcher.close().then(() => this.#deadlines?.release())
    }
    return this.#closing
  }

  /**
   * Aborts every running and queued call with `error` (undici's `ClientDestroyedError` by default) and
   * closes every connection at once; later calls fail like after `close()`. Idempotent.
   */
  destroy(error?: Error): Promise<void> {
    if (this.#destroying === undefined) {
      this.#release()
      this.#destroying = this.#dispatcher.destroy(error ?? null).then(() => this.#deadlines?.release())
    }
    return this.#destroying
  }

  #release(): void {
    this.uninstallGlobal()
    this.#unregister?.()
    this.#unregister = undefined
  }
}

/**
 * Creates a bounded outgoing HTTP client. Throws `LG_ERR_INVALID_OPTION` for any invalid option.
 *
 * @example
 * const upstream = createHttpClient({ connections: 16, maxQueue: 64, timeout: 2_000, guard: app.leakGuard })
 * app.get('/users/:id', async (req, res) => {
 *   const r = await upstream.fetch(`http://users.internal/users/${req.params.id}`) // aborted with the request
 *   res.json(await r.json())
 * })
 */
export function createHttpClient(options?: HttpClientOptions): HttpClient {
  return new HttpClient(options)
}
