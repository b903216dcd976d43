import { ShutdownError, TimeoutError, type LeakGuardError } from '../errors.js'

/** The body of an answer: the payload and its `Content-Type`. */
export interface AnswerBody {
  payload: string
  type: string
}

/** The options an answer is built from (a guard's resolved options). */
export interface AnswerOptions {
  timeoutStatus: number
  retryAfter: number | false
  timeoutBody: string | Record<string, unknown> | undefined
}

const httpReason: Record<number, string> = { 503: 'Service Unavailable', 504: 'Gateway Timeout', 500: 'Internal Server Error' }

/**
 * Does an abort with `reason` need an answer from leak-guard? A deadline that passed or a shutdown
 * does: the client is still there and waits. A client that left, or a request that ended, does not.
 */
export function needsAnswer(reason: unknown): reason is TimeoutError | ShutdownError {
  return reason instanceof TimeoutError || reason instanceof ShutdownError
}

/**
 * What leak-guard answers when it aborts a request that is still waiting (deadline, shutdown, a request
 * refused during the drain): built once per guard from `timeoutStatus`, `retryAfter` and `timeoutBody`,
 * then read by the scope, the server drain and every adapter.
 */
export class AbortAnswer {
  /** Status of the timeout answer (`timeoutStatus`); a shutdown answers 503. */
  readonly timeoutStatus: number
  /** `Retry-After` header of the timeout and shutdown answers, `undefined` when `retryAfter: false`. */
  readonly headers: Readonly<Record<string, string>> | undefined
  /** The body configured with `timeoutBody`, sent as is by every adapter; `undefined` when unset. */
  readonly custom: AnswerBody | undefined

  constructor(options: AnswerOptions) {
    this.timeoutStatus = options.timeoutStatus
    this.headers = options.retryAfter === false ? undefined : Object.freeze({ 'Retry-After': String(options.retryAfter) })
    const body = options.timeoutBody
    this.custom =
      body === undefined
        ? undefined
        : Object.freeze(typeof body === 'string' ? { payload: body, type: 'text/plain; charset=utf-8' } : { payload: JSON.stringify(body), type: 'application/json; charset=utf-8' })
  }

  /** The reason of a deadline of `ms` that passed, carrying this answer's status and headers. */
  timeout(ms: number): TimeoutError {
    return new TimeoutError(ms, this.timeoutStatus, this.headers)
  }

  /** The reason of a shutdown, carrying this answer's headers. */
  shutdown(): ShutdownError {
    return new ShutdownError(this.headers)
  }

  /**
   * The body sent for `error` when leak-guard writes the answer itself: `timeoutBody` when set, else
   * the JSON error `{ statusCode, code, error, message }`.
   */
  body(error: LeakGuardError): AnswerBody {
    if (this.custom !== undefined) return this.custom
    return {
      payload: JSON.stringify({
        statusCode: error.statusCode,
        code: error.code,
        error: httpReason[error.statusCode] ?? 'Error',
        message: error.message,
      }),
      type: 'application/json; charset=utf-8',
    }
  }
}

/** The answer of the defaults (`timeoutStatus: 503`, `retryAfter: 1`, no `timeoutBody`): a drain without a guard. */
export const defaultAnswer = new AbortAnswer({ timeoutStatus: 503, retryAfter: 1, timeoutBody: undefined })
