/**
 * Every error leak-guard raises, in one place.
 *
 * Each error has a stable `code` (`LG_ERR_<AREA>_<DETAIL>`), an HTTP `statusCode`/`status`, `expose`
 * (whether its message is safe to show a client) and optional `headers`. Errors are branded with a
 * `Symbol.for` key, so `instanceof` works even when two copies of @leak-guard/core are installed.
 */

const kBrand = Symbol.for('leak-guard.error.v1')
const kKind = Symbol('leak-guard.error.kind')

/** The table of codes: status and whether the message is safe to send to a client. */
export const errorCodes = {
  LG_ERR_INVALID_OPTION: { status: 500, expose: false },
  LG_ERR_TIMEOUT: { status: 503, expose: true },
  LG_ERR_CLIENT_CLOSED: { status: 499, expose: false },
  LG_ERR_SHUTDOWN: { status: 503, expose: true },
  LG_ERR_REQUEST_ENDED: { status: 500, expose: false },
  LG_ERR_CLIENT_QUEUE_FULL: { status: 503, expose: true },
  LG_ERR_CLIENT_TIMEOUT: { status: 504, expose: true },
  LG_ERR_CLIENT_HTTP_CLOSED: { status: 503, expose: true },
  LG_ERR_POOL_FULL: { status: 503, expose: true },
  LG_ERR_POOL_QUEUE_TIMEOUT: { status: 503, expose: true },
  LG_ERR_POOL_CLOSED: { status: 503, expose: true },
  LG_ERR_WORKER_ERROR: { status: 500, expose: false },
  LG_ERR_WORKER_EXIT: { status: 500, expose: false },
  LG_ERR_WORKER_RESOURCE_LIMITS: { status: 500, expose: false },
  LG_ERR_JOB_FAILED: { status: 500, expose: false },
  LG_ERR_JOB_CANCELLED: { status: 503, expose: true },
  LG_ERR_QUEUE_UNAVAILABLE: { status: 503, expose: true },
} as const satisfies Record<string, { status: number; expose: boolean }>

export type ErrorCode = keyof typeof errorCodes

export interface LeakGuardErrorOptions {
  cause?: unknown
  headers?: Record<string, string> | undefined
  /** Overrides the status of the code table (e.g. a configured timeout status). */
  status?: number | undefined
}

export class LeakGuardError extends Error {
  declare static readonly [kKind]: string
  readonly code: ErrorCode
  statusCode: number
  readonly expose: boolean
  headers: Record<string, string> | undefined

  constructor(code: ErrorCode, message: string, options?: LeakGuardErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    const entry = errorCodes[code]
    this.code = code
    this.statusCode = options?.status ?? entry.status
    this.expose = entry.expose
    this.headers = options?.headers
  }

  /** Alias of `statusCode`, read (and written back) by Koa and http-errors style handlers. */
  get status(): number {
    return this.statusCode
  }

  set status(value: number) {
    this.statusCode = value
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (value === null || typeof value !== 'object') return false
    const kinds = (value as { [kBrand]?: unknown })[kBrand]
    return Array.isArray(kinds) && kinds.includes(this[kKind])
  }
}

/**
 * Brands a class: its instances carry the names of every leak-guard class in their chain under a
 * `Symbol.for` key, which is what `instanceof` checks.
 */
function brand(ctor: { prototype: object; name: string; [kKind]: string }, parent?: { prototype: object }): void {
  const parentKinds = parent ? ((parent.prototype as { [kBrand]: string[] })[kBrand] ?? []) : []
  Object.defineProperty(ctor, kKind, { value: ctor.name })
  Object.defineProperty(ctor.prototype, kBrand, { value: Object.freeze([...parentKinds, ctor.name]) })
  Object.defineProperty(ctor.prototype, 'name', { value: ctor.name, writable: true, configurable: true })
}

brand(LeakGuardError)

/** An option given to a factory is invalid. Thrown at creation time, never per request. */
export class InvalidOptionError extends LeakGuardError {
  readonly option: string
  constructor(option: string, message: string) {
    super('LG_ERR_INVALID_OPTION', message)
    this.option = option
  }
}
brand(InvalidOptionError, LeakGuardError)

/** Why a request scope was aborted. */
export abstract class AbortReasonError extends LeakGuardError {}
brand(AbortReasonError, LeakGuardError)

/** The request's deadline passed before it was answered. */
export class TimeoutError extends AbortReasonError {
  /** The deadline that was missed, in milliseconds from when the guard saw the request. */
  readonly timeout: number
  constructor(timeout: number, status?: number, headers?: Record<string, string>) {
    super('LG_ERR_TIMEOUT', `Request timed out after ${timeout} ms`, { status, headers })
    this.timeout = timeout
  }
}
brand(TimeoutError, AbortReasonError)

/** The client closed the connection before the response was complete. */
export class ClientClosedError extends AbortReasonError {
  constructor() {
    super('LG_ERR_CLIENT_CLOSED', 'Client closed the connection before the response was complete')
  }
}
brand(ClientClosedError, AbortReasonError)

/** The server is shutting down and the request's grace period ran out. */
export class ShutdownError extends AbortReasonError {
  constructor(headers?: Record<string, string>) {
    super('LG_ERR_SHUTDOWN', 'Server is shutting down', { headers })
  }
}
brand(ShutdownError, AbortReasonError)

/**
 * The request ended (its response closed); work still tied to it is cancelled, as Go cancels a
 * request's context when `ServeHTTP` returns. One shared instance: it carries no per-request data and
 * building an Error with a stack per request would cost more than the rest of the scope.
 */
export class RequestEndedError extends AbortReasonError {
  constructor() {
    super('LG_ERR_REQUEST_ENDED', 'The request ended; work tied to it was cancelled')
  }
}
brand(RequestEndedError, AbortReasonError)

export const requestEnded: RequestEndedError = Object.freeze(new RequestEndedError())

/** A dispatcher or thread pool has no room: its queue is full. Carries `Retry-After`. */
export class PoolFullError extends LeakGuardError {
  /** Seconds after which a retry has a fair chance, from the queue depth and the recent service time. */
  readonly retryAfter: number
  constructor(retryAfter: number) {
    super('LG_ERR_POOL_FULL', 'Too much work queued; try again later', { headers: { 'Retry-After': String(retryAfter) } })
    this.retryAfter = retryAfter
  }
}
brand(PoolFullError, LeakGuardError)

/** A task waited in a dispatcher's or thread pool's queue longer than its `queueTimeout`. */
export class PoolQueueTimeoutError extends LeakGuardError {
  readonly queueTimeout: number
  constructor(queueTimeout: number, retryAfter: number) {
    super('LG_ERR_POOL_QUEUE_TIMEOUT', `Task waited in the queue for more than ${queueTimeout} ms`, { headers: { 'Retry-After': String(retryAfter) } })
    this.queueTimeout = queueTimeout
  }
}
brand(PoolQueueTimeoutError, LeakGuardError)

/** The dispatcher or thread pool was closed or destroyed: no new work, queued work dropped. */
export class PoolClosedError extends LeakGuardError {
  constructor() {
    super('LG_ERR_POOL_CLOSED', 'The pool is closed')
  }
}
brand(PoolClosedError, LeakGuardError)

/** A worker thread died of an uncaught error while running the task; the pool replaced it. */
export class WorkerError extends LeakGuardError {
  constructor(cause: unknown) {
    super('LG_ERR_WORKER_ERROR', 'The worker thread failed with an uncaught error', { cause })
  }
}
brand(WorkerError, LeakGuardError)

/** The worker thread exited (e.g. `process.exit()`) while running the task; the pool replaced it. */
export class WorkerExitError extends LeakGuardError {
  /** The worker's exit code, when known. */
  readonly exitCode: number | undefined
  constructor(exitCode: number | undefined, cause?: unknown) {
    super('LG_ERR_WORKER_EXIT', `The worker thread exited${exitCode === undefined ? '' : ` with code ${exitCode}`} while running the task`, { cause })
    this.exitCode = exitCode
  }
}
brand(WorkerExitError, LeakGuardError)

/** The worker thread hit its `resourceLimits` (heap or stack) and was stopped; the pool replaced it. */
export class WorkerResourceLimitsError extends LeakGuardError {
  constructor(cause: unknown) {
    super('LG_ERR_WORKER_RESOURCE_LIMITS', 'The worker thread exceeded its resource limits', { cause })
  }
}
brand(WorkerResourceLimitsError, LeakGuardError)

/**
 * An outgoing call was refused at once because its origin already has `connections + maxQueue` calls
 * in flight (running or waiting for a connection). Shed load instead of queueing without bound.
 */
export class ClientQueueFullError extends LeakGuardError {
  /** The origin whose queue was full. */
  readonly origin: string
  /** The `maxQueue` bound that was reached. */
  readonly maxQueue: number
  constructor(origin: string, maxQueue: number) {
    super('LG_ERR_CLIENT_QUEUE_FULL', `Too many outgoing requests waiting for a connection to ${origin} (maxQueue ${maxQueue})`)
    this.origin = origin
    this.maxQueue = maxQueue
  }
}
brand(ClientQueueFullError, LeakGuardError)

/**
 * An outgoing call ran past the HTTP client's own `timeout` (not the inbound request's deadline, which
 * aborts calls with the request's `TimeoutError`).
 */
export class ClientTimeoutError extends LeakGuardError {
  readonly timeout: number
  constructor(timeout: number) {
    super('LG_ERR_CLIENT_TIMEOUT', `Outgoing request timed out after ${timeout} ms`)
    this.timeout = timeout
  }
}
brand(ClientTimeoutError, LeakGuardError)

/**
 * A call was made on an outgoing HTTP client (`createHttpClient`) after its `close()` or `destroy()`
 * (the guard closes it at shutdown). Not to be confused with `ClientClosedError`, the inbound client
 * that hung up.
 */
export class HttpClientClosedError extends LeakGuardError {
  constructor() {
    super('LG_ERR_CLIENT_HTTP_CLOSED', 'The HTTP client is closed')
  }
}
brand(HttpClientClosedError, LeakGuardError)

/**
 * A copy of an abort reason (`TimeoutError`, `ClientClosedError`, ...) that carries `cause`: what the
 * work reported when the abort stopped it (e.g. PostgreSQL's `57014` after a cancel). Same class, code,
 * status and headers as `reason`, which stays untouched (it is shared by the whole request, and
 * `LG_ERR_REQUEST_ENDED` is one frozen instance). Used by integrations, through `@leak-guard/core/adapter`.
 */
export function withCause<E extends LeakGuardError>(reason: E, cause: unknown): E {
  const copy = Object.create(Object.getPrototypeOf(reason) as object) as E
  for (const key of Reflect.ownKeys(reason)) {
    const descriptor = Object.getOwnPropertyDescriptor(reason, key)!
    Object.defineProperty(copy, key, { ...descriptor, configurable: true, ...('value' in descriptor ? { writable: true } : {}) })
  }
  Object.defineProperty(copy, 'cause', { value: cause, writable: true, configurable: true, enumerable: false })
  return copy
}

/**
 * A queued job (`@leak-guard/bullmq`) failed on its worker: the processor threw and its attempts ran
 * out, or it stalled more often than `maxStalledCount`. `failedReason` is BullMQ's text for it.
 */
export class JobFailedError extends LeakGuardError {
  readonly jobId: string
  readonly failedReason: string
  constructor(jobId: string, failedReason: string) {
    super('LG_ERR_JOB_FAILED', `Job ${jobId} failed: ${failedReason}`)
    this.jobId = jobId
    this.failedReason = failedReason
  }
}
brand(JobFailedError, LeakGuardError)

/**
 * A queued job (`@leak-guard/bullmq`) was cancelled from another process: the request that ran it
 * ended. The worker's processor signal aborts with it; `reason` is the code of why the request ended.
 */
export class JobCancelledError extends LeakGuardError {
  readonly jobId: string
  /** Code of the producer's reason (`LG_ERR_TIMEOUT`, `LG_ERR_CLIENT_CLOSED`, `LG_ERR_REQUEST_ENDED`, ...). */
  readonly reason: string
  constructor(jobId: string, reason: string) {
    super('LG_ERR_JOB_CANCELLED', `Job ${jobId} was cancelled by its producer (${reason})`)
    this.jobId = jobId
    this.reason = reason
  }
}
brand(JobCancelledError, LeakGuardError)

/**
 * The job queue's store (Redis) is not reachable: a call made while the connection is down rejects at
 * once, and calls waiting for a result reject when the connection drops (the job may still run).
 */
export class QueueUnavailableError extends LeakGuardError {
  constructor(cause?: unknown) {
    super('LG_ERR_QUEUE_UNAVAILABLE', 'The job queue is unavailable (no connection to Redis)', { cause })
  }
}
brand(QueueUnavailableError, LeakGuardError)

/** True for any error created by any copy of leak-guard. */
export function isLeakGuardError(value: unknown): value is LeakGuardError {
  return value instanceof LeakGuardError
}
