import { integerOrFalse, invalid, milliseconds, millisecondsOrFalse } from '../options.js'
import type { RequestScope } from '../scope/request-scope.js'
import type { Guard } from '../scope/guard.js'
import { isGuard } from '../brand.js'

/** Options every pool shares. */
export interface AdmissionOptions {
  /**
   * Tasks that may wait for a slot. When full, `run()` rejects at once with `PoolFullError`
   * (`LG_ERR_POOL_FULL`, 503 + `Retry-After`). `false` for no bound (not recommended under load).
   * @default 1000
   */
  maxQueue?: number | false
  /**
   * How long a task may wait for a slot, in milliseconds, before it rejects with `PoolQueueTimeoutError`
   * (`LG_ERR_POOL_QUEUE_TIMEOUT`, 503); `false` to wait as long as it takes.
   * @default false
   */
  queueTimeout?: number | false
  /**
   * Most tasks of one request running at once; its other tasks wait while other requests' tasks go
   * first. `false` for no per-request cap.
   * @default false
   */
  maxPerRequest?: number | false
  /**
   * How long `close()` waits for accepted tasks to finish, in milliseconds, before it destroys the pool.
   * @default 10000
   */
  closeTimeout?: number
  /**
   * The guard of the app (`middleware.guard`, `fastify.leakGuard`). When given, the pool is registered
   * with it so shutdown closes it, and tasks still running `leakGracePeriod` after their request ended
   * are reported as leaks (`guard.on('leak')`, kind `task`).
   * @default undefined
   */
  guard?: Guard
}

/** Options of one `run()` call. */
export interface RunOptions {
  /**
   * Aborts the task: dropped if still queued, aborted if running. Inside a request the task is tied to
   * the request as well; outside one this is its only signal.
   * @default undefined
   */
  signal?: AbortSignal | undefined
  /**
   * The request the task belongs to. By default the current one (`currentScope()`); `null` detaches the
   * task from any request (it then only stops on `signal`, `destroy()` or shutdown).
   * @default currentScope()
   */
  scope?: RequestScope | null | undefined
}

/** Admission options with every field set; "no bound" is `Infinity`. */
export interface ResolvedAdmissionOptions {
  concurrency: number
  maxQueue: number
  queueTimeout: number | false
  maxPerRequest: number
  closeTimeout: number
  guard: Guard | undefined
}

export const admissionKeys = ['maxQueue', 'queueTimeout', 'maxPerRequest', 'closeTimeout', 'guard'] as const

/** Checks the shared options once, at creation; `concurrency` comes checked from the pool's own options. */
export function resolveAdmission(o: Record<string, unknown>, concurrency: number): ResolvedAdmissionOptions {
  const guard = o.guard
  if (guard !== undefined && !isGuard(guard)) {
    throw invalid('guard', 'a leak-guard Guard (`middleware.guard`, `fastify.leakGuard`)', guard)
  }
  const maxQueue = integerOrFalse('maxQueue', o.maxQueue, 1000, 0)
  const maxPerRequest = integerOrFalse('maxPerRequest', o.maxPerRequest, false)
  return {
    concurrency,
    maxQueue: maxQueue === false ? Infinity : maxQueue,
    queueTimeout: millisecondsOrFalse('queueTimeout', o.queueTimeout, false),
    maxPerRequest: maxPerRequest === false ? Infinity : maxPerRequest,
    closeTimeout: milliseconds('closeTimeout', o.closeTimeout, 10_000),
    guard: guard as Guard | undefined,
  }
}
