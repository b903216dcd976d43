import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import { storage } from '../scope/context.js'
import type { RequestScope, ScopeOwner, SpawnedTask } from '../scope/request-scope.js'
import { kOwner, kTrack, kUntrack } from '../symbols.js'
import { calledFromUserCode, captureUserStack, type LazyStack } from './stack.js'

/**
 * Watches outgoing HTTP calls through diagnostics_channel and ties each to the request scope that
 * started it (read from AsyncLocalStorage at the moment the call is created):
 *
 * - a call started from a scope that already ended or was aborted is reported at once as late work
 *   (kind `request`);
 * - a call started from a live scope joins that scope's tasks, so one still running a grace period
 *   after the request ended is reported like a `spawn` task, and the live dump lists it.
 *
 * undici (the package, and Node's copy behind global `fetch`) publishes `undici:request:create`
 * synchronously inside `fetch()`/`request()`, so a stack captured there names the caller. node:http
 * publishes `http.client.request.created` synchronously in newer Node (24 has it, 20 does not) and
 * `http.client.request.start` later, once a socket is assigned; on Node 20 only the latter fires, so
 * the scope is still right but the stack no longer names the caller.
 *
 * Limit: a connection-limited undici Pool creates the requests it queued later, from its socket's
 * callbacks, where AsyncLocalStorage holds the context of whoever opened the socket. Such a request is
 * never reported as started late (its stack holds no user frame, checked only on that rare path), but
 * while that other scope is still live the call is listed under it.
 *
 * The channels are subscribed while at least one guard watches and unsubscribed when the last one
 * is disposed.
 */

interface UndiciRequest {
  method?: string
  /** A string in undici's own calls; a `URL` when user code passed `{ origin: new URL(...) }` to `dispatch()`. */
  origin?: string | URL
  path?: string
}

interface HttpClientRequest {
  method?: string
  protocol?: string
  host?: string
  path?: string
  once(event: 'close', listener: () => void): unknown
}

const watchers = new Set<ScopeOwner>()
const pending = new WeakMap<object, OutgoingCall>()
const seenHttp = new WeakSet<object>()

function scopeFor(): RequestScope | undefined {
  const scope = storage.getStore()
  if (scope === undefined || !watchers.has(scope[kOwner])) return undefined
  return scope
}

/**
 * An outgoing call a live scope watches: one small object per call, no promise. Its label is built only
 * when a dump or a leak report reads it.
 */
class OutgoingCall implements SpawnedTask {
  readonly kind = 'request' as const
  readonly startedAt: number
  readonly scope: RequestScope
  #trace: LazyStack | undefined
  #request: object
  #format: (request: never) => string

  constructor(scope: RequestScope, trace: LazyStack | undefined, request: object, format: (request: never) => string) {
    this.startedAt = performance.now()
    this.scope = scope
    this.#trace = trace
    this.#request = request
    this.#format = format
  }

  get stack(): string | undefined {
    return this.#trace?.stack
  }

  get label(): string {
    return this.#format(this.#request as never)
  }
}

/**
 * Reports a late call, or tracks a call of a live scope until `finish(request)`. `origin` is the channel
 * subscriber when it runs synchronously inside the caller's code, so a late call can be checked for
 * really coming from user code before it is blamed on the scope (see `calledFromUserCode`).
 */
function attach<R extends object>(scope: RequestScope, trace: LazyStack | undefined, request: R, format: (request: R) => string, origin?: (message: unknown) => void): boolean {
  if (scope.state !== 'running') {
    // Rare path: the cost of a stack walk is paid only here.
    const fromUser = origin === undefined || (trace !== undefined ? trace.stack !== undefined : calledFromUserCode(origin))
    if (fromUser) scope[kOwner].reportLeak(scope, 'request', trace?.stack)
    return false
  }
  const call = new OutgoingCall(scope, trace, request, format)
  pending.set(request, call)
  scope[kTrack](call)
  return true
}

function finish(key: object): void {
  const call = pending.get(key)
  if (call === undefined) return
  pending.delete(key)
  call.scope[kUntrack](call)
}

function undiciLabel(request: UndiciRequest): string {
  return `${request.method ?? 'GET'} ${originText(request.origin)}${request.path ?? ''}`
}

// `String(url)` is the href, which ends in `/` and would double the path's slash; `.origin` is the
// scheme://host:port a string origin holds.
function originText(origin: string | URL | undefined): string {
  if (origin === undefined) return ''
  return typeof origin === 'string' ? origin : origin.origin
}

function httpLabel(request: HttpClientRequest): string {
  return `${request.method ?? 'GET'} ${request.protocol ?? 'http:'}//${request.host ?? ''}${request.path ?? ''}`
}

function onUndiciCreate(message: unknown): void {
  const scope = scopeFor()
  if (scope === undefined) return
  const request = (message as { request?: UndiciRequest }).request
  if (request === undefined || request === null) return
  const stack = scope[kOwner].captureStacks ? captureUserStack(onUndiciCreate) : undefined
  attach(scope, stack, request, undiciLabel, onUndiciCreate)
}

function onUndiciDone(message: unknown): void {
  const request = (message as { request?: object }).request
  if (request !== undefined && request !== null) finish(request)
}

function watchHttp(request: HttpClientRequest, trace: LazyStack | undefined, scope: RequestScope, origin?: (message: unknown) => void): void {
  if (attach(scope, trace, request, httpLabel, origin)) request.once('close', () => finish(request))
}

function onHttpCreated(message: unknown): void {
  const request = (message as { request?: HttpClientRequest }).request
  if (request === undefined || request === null || seenHttp.has(request)) return
  seenHttp.add(request)
  const scope = scopeFor()
  if (scope === undefined) return
  watchHttp(request, scope[kOwner].captureStacks ? captureUserStack(onHttpCreated) : undefined, scope, onHttpCreated)
}

function onHttpStart(message: unknown): void {
  const request = (message as { request?: HttpClientRequest }).request
  if (request === undefined || request === null || seenHttp.has(request)) return
  seenHttp.add(request)
  const scope = scopeFor()
  if (scope === undefined) return
  watchHttp(request, scope[kOwner].captureStacks ? captureUserStack(onHttpStart) : undefined, scope)
}

const subscriptions: ReadonlyArray<readonly [string, (message: unknown) => void]> = [
  ['undici:request:create', onUndiciCreate],
  ['undici:request:trailers', onUndiciDone],
  ['undici:request:error', onUndiciDone],
  ['http.client.request.created', onHttpCreated],
  ['http.client.request.start', onHttpStart],
]

/** Starts attributing outgoing calls to `owner`'s scopes. Returns the function that stops it. */
export function watchOutgoing(owner: ScopeOwner): () => void {
  if (watchers.size === 0) {
    for (const [name, fn] of subscriptions) subscribe(name, fn)
  }
  watchers.add(owner)
  return () => {
    if (!watchers.delete(owner) || watchers.size > 0) return
    for (const [name, fn] of subscriptions) unsubscribe(name, fn)
  }
}

/** Whether any guard of this copy of leak-guard is watching outgoing calls (for tests). */
export function watchingOutgoing(): boolean {
  return watchers.size > 0
}
