/**
 * Types shared across core's modules. They live here, apart from the classes, so that modules which
 * only need a type do not import each other (guard ↔ shutdown, guard ↔ leak-log, context ↔ scope).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { AbortAnswer } from './respond/answer.js'

export type AnyRequest = IncomingMessage | Http2ServerRequest
export type AnyResponse = ServerResponse | Http2ServerResponse

/** What kind of work outlived its request. */
export type WorkKind = 'spawn' | 'task' | 'request' | 'handler' | 'query' | 'job'

/** Work that kept running, or started, after its request ended. */
export interface LeakEvent {
  /**
   * `spawn`: a `scope.spawn()` task; `task`: a dispatcher task; `request`: an outgoing HTTP call;
   * `handler`: a handler that settled after its request was answered; `query`: a database query
   * (`@leak-guard/pg`); `job`: a queued job (`@leak-guard/bullmq`).
   */
  kind: WorkKind
  /** The request's scope id; `0` for work reported outside any request (`reportUnscopedLeak`). */
  scopeId: number
  /** The request's method; `'JOB'` for a queue worker's job. */
  method: string
  /** The request's URL; for a queue worker's job, `<queue>:<name>#<id>`. */
  url: string
  route: string | undefined
  /** Code of the reason the request ended (`LG_ERR_TIMEOUT`, `LG_ERR_CLIENT_CLOSED`, `LG_ERR_SHUTDOWN`, `LG_ERR_REQUEST_ENDED`). */
  reason: string
  /** Milliseconds between the end of the request and this report. */
  lateBy: number
  /** Where the work started, when `captureStacks` is on. */
  stack: string | undefined
}

/** Something the guard closes when the server shuts down (dispatchers, pools, clients). */
export interface Closeable {
  close(): Promise<unknown>
}

/** What a request's work is handed: the scope's signal. */
export type ScopedWork<T> = (signal: AbortSignal) => T | PromiseLike<T>

/** How the request ended, for stats and metrics. */
export type ScopeOutcome = 'ok' | 'timeout' | 'client-closed' | 'shutdown'

export interface SpawnedTask {
  /** The work's promise (`scope.spawn()`); outgoing calls the guard watches have none. */
  readonly promise?: Promise<unknown>
  /** Stack where the task was started, when `captureStacks` is on. */
  readonly stack: string | undefined
  readonly startedAt: number
  /**
   * `request` for an outgoing HTTP call the guard watches; `spawn` (the default) for `scope.spawn()`;
   * `query`/`job` for work an integration tracks with `trackWork()` (`@leak-guard/core/adapter`).
   */
  readonly kind?: 'spawn' | 'request' | 'query' | 'job'
  /** What the task is, for the live dump (e.g. `GET http://127.0.0.1:3000/path`). */
  readonly label?: string
}

/** What a finished shutdown reports. */
export interface ShutdownSummary {
  /**
   * Requests (HTTP/1 responses, HTTP/2 streams) that completed during the drain before the grace
   * period ran out: those in flight when it began, plus those served on open connections with
   * `idleConnections: 'serve'`.
   */
  drained: number
  /** Requests aborted with `ShutdownError` when the grace period ran out. */
  aborted: number
  /** Connections and HTTP/2 sessions destroyed at `forceAfter` (or by a second signal). */
  forced: number
  /** Requests that arrived on open connections during the drain and were answered 503 + `Connection: close`. */
  rejected: number
  /** Registered resources (dispatchers, pools, clients) closed. */
  resources: number
  /** Milliseconds from the start of the shutdown to its end. */
  durationMs: number
}

/**
 * What the shutdown sequence drives on a guard; a `Guard` (`middleware.guard`, `fastify.leakGuard`) is
 * one. Declared here so that the shutdown does not import the guard's module, and the guard can run
 * the shutdown sequence itself (`guard.shutdown()`).
 */
export interface ShutdownGuard {
  /** True once shutdown started. */
  readonly closing: boolean
  /** Marks the guard as closing and aborts its lifetime signal. */
  beginShutdown(): void
  /** Aborts (and answers) every live request; returns how many. */
  abortAll(): number
  /** The dispatchers, pools and clients to close at the end. */
  resources(): Closeable[]
  /** Stops the guard's own timers. */
  dispose(): void
  /** @internal What requests refused during the drain get. */
  readonly answer: AbortAnswer
  /** @internal Lets `guard.shutdown()` run this shutdown. */
  attachShutdown(hook: () => Promise<ShutdownSummary>): () => void
}
