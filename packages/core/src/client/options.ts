import { checkKeys, integer, integerOrFalse, invalid, milliseconds, millisecondsOrFalse } from '../options.js'
import type { Closeable } from '../types.js'
import { isGuard } from '../brand.js'
import { connectHeader, resolveDeadlineHeader, type DeadlineHeaderSpec, type OutboundDeadlineHeader } from '../timeout/deadline-header.js'

/** Something that closes registered resources at shutdown: a `Guard`. */
export interface ClientOwner {
  register(resource: Closeable): () => void
}

export interface HttpClientOptions {
  /**
   * Most connections (sockets) open at once to one origin. Calls beyond it wait for a free connection.
   * @default 32
   */
  connections?: number
  /**
   * Most calls per origin that may wait for a connection once all `connections` are busy. The next call
   * fails at once with `LG_ERR_CLIENT_QUEUE_FULL` (503). `0` means "never wait"; `false` removes the
   * bound (not recommended: incident 3).
   * @default 256
   */
  maxQueue?: number | false
  /**
   * Deadline of a whole call (connect, headers and body) made with `client.fetch()`/`client.request()`,
   * in milliseconds; it fails with `LG_ERR_CLIENT_TIMEOUT` (504). Inside a request scope the call is also
   * bounded by the request's remaining time and then fails with the request's own `TimeoutError`.
   * `false` for none. Override per call with `{ timeout }`.
   * @default 30000
   */
  timeout?: number | false
  /**
   * How long an idle connection is kept for reuse, in milliseconds. Keep it below the upstream's idle
   * timeout (Node's default is 5 s) so the client never reuses a socket the upstream is closing. A
   * shorter `Keep-Alive: timeout` hint from the upstream wins.
   * @default 4000
   */
  keepAliveTimeout?: number
  /**
   * Deadline to establish a connection (TCP and TLS), in milliseconds.
   * @default 10000
   */
  connectTimeout?: number
  /**
   * Deadline for the response headers once the request was sent, in milliseconds.
   * @default 30000
   */
  headersTimeout?: number
  /**
   * Longest pause between two chunks of the response body, in milliseconds.
   * @default 30000
   */
  bodyTimeout?: number
  /**
   * Socket and TLS options for new connections (`ca`, `cert`, `rejectUnauthorized`, `servername`, ...),
   * handed to undici's connector. `timeout` in here is ignored: use `connectTimeout`.
   * @default undefined
   */
  connect?: Record<string, unknown>
  /**
   * A guard (`createGuard()`, `middleware.guard`, `fastify.leakGuard`): the client registers with it so
   * shutdown closes it.
   * @default undefined
   */
  guard?: ClientOwner
  /**
   * The header that tells the upstream how long the request has left, so the upstream's deadline
   * expires with ours: `'connect'` (`Connect-Timeout-Ms`), `'grpc'` (`grpc-timeout`), `'envoy'`
   * (`x-envoy-expected-rq-timeout-ms`), `{ name }` (decimal milliseconds in a header of your own), or
   * `false` for none. Sent only by calls made inside a request scope that has a deadline, with the time
   * left when the call is handed to a connection (after any wait in the queue), rounded down; a header
   * the caller set is left as it is. A call with less than 1 ms left is not sent: it rejects with the
   * request's `TimeoutError` (`LG_ERR_TIMEOUT`). Override per call with `{ deadlineHeader }`.
   * @default 'connect'
   */
  deadlineHeader?: OutboundDeadlineHeader
}

export interface ResolvedHttpClientOptions {
  connections: number
  maxQueue: number | false
  timeout: number | false
  keepAliveTimeout: number
  connectTimeout: number
  headersTimeout: number
  bodyTimeout: number
  connect: Record<string, unknown> | undefined
  guard: ClientOwner | undefined
  deadlineHeader: DeadlineHeaderSpec | false
}

const clientKeys = [
  'connections',
  'maxQueue',
  'timeout',
  'keepAliveTimeout',
  'connectTimeout',
  'headersTimeout',
  'bodyTimeout',
  'connect',
  'guard',
  'deadlineHeader',
] as const


export function resolveHttpClientOptions(options?: HttpClientOptions): ResolvedHttpClientOptions {
  const o = checkKeys('createHttpClient()', options, clientKeys)
  const connect = o.connect
  if (connect !== undefined && (connect === null || typeof connect !== 'object' || Array.isArray(connect))) {
    throw invalid('connect', 'an object of socket/TLS options', connect)
  }
  const guard = o.guard
  if (guard !== undefined && !isGuard(guard)) {
    throw invalid('guard', 'a leak-guard Guard (`middleware.guard`, `fastify.leakGuard`)', guard)
  }
  return {
    connections: integer('connections', o.connections, 32, 1, 65_535),
    maxQueue: integerOrFalse('maxQueue', o.maxQueue, 256, 0),
    timeout: millisecondsOrFalse('timeout', o.timeout, 30_000),
    keepAliveTimeout: milliseconds('keepAliveTimeout', o.keepAliveTimeout, 4_000),
    connectTimeout: milliseconds('connectTimeout', o.connectTimeout, 10_000),
    headersTimeout: milliseconds('headersTimeout', o.headersTimeout, 30_000),
    bodyTimeout: milliseconds('bodyTimeout', o.bodyTimeout, 30_000),
    connect: connect as Record<string, unknown> | undefined,
    guard: guard as ClientOwner | undefined,
    deadlineHeader: resolveDeadlineHeader(o.deadlineHeader, connectHeader),
  }
}
