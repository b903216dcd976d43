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
  readonly statusCode: number
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

  /** Alias of `statusCode`, read by Koa and http-errors style handlers. */
  get status(): number {
    return this.statusCode
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
brand(AbortReasonError as unknown as typeof LeakGuardError, LeakGuardError)

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

export const requestEnded: RequestEndedError = Object.freeze(new RequestEndedError()) as RequestEndedError

/** True for any error created by any copy of leak-guard. */
export function isLeakGuardError(value: unknown): value is LeakGuardError {
  return value instanceof LeakGuardError
}
