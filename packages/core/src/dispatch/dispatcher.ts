import { PoolClosedError } from '../errors.js'
import { checkKeys, integer, invalid } from '../options.js'
import { Admission } from './admission.js'
import { admissionKeys, resolveAdmission, type AdmissionOptions, type RunOptions } from './options.js'
import type { Task } from './task.js'

export interface DispatcherOptions extends AdmissionOptions {
  /**
   * Tasks that may run at once.
   * @default 16
   */
  concurrency?: number
}

/** Work handed to a dispatcher: gets the signal it must honour. */
export type DispatchedWork<T> = (signal: AbortSignal) => T | PromiseLike<T>

const dispatcherKeys = ['concurrency', ...admissionKeys] as const

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function'
}

/**
 * A bounded pool for in-process async work: the Node form of "no bare goroutines in handlers, hand work
 * to a pool with cancel". Create one per kind of work at startup.
 *
 * `run(fn)` calls `fn(signal)` when a slot is free. Inside a request the signal is the request's (the
 * task dies with the request: dropped if still queued, aborted if running); pass `{ signal }` to add
 * your own. The returned promise settles with `fn`'s outcome: a slot stays taken until `fn` settles,
 * so work that ignores its signal still counts against the bound.
 */
export class Dispatcher extends Admission {
  protected readonly ownSignal = false
  protected readonly keepsContext = true
  #lifetime: AbortController | undefined

  /** @internal Use `createDispatcher()`. */
  constructor(options?: DispatcherOptions) {
    const o = checkKeys('createDispatcher()', options, dispatcherKeys)
    super(resolveAdmission(o, integer('concurrency', o.concurrency, 16)))
  }

  /**
   * Runs `fn(signal)` when a slot is free, in the caller's AsyncLocalStorage context.
   *
   * Rejects with `PoolFullError` (503 + `Retry-After`) when the queue is full, `PoolQueueTimeoutError`
   * when it waited longer than `queueTimeout`, `PoolClosedError` after `close()`/`destroy()`, and with
   * the abort reason when its request or signal aborted before it started; with `LG_ERR_INVALID_OPTION`
   * when `fn` is not a function or `options.signal` not an AbortSignal.
   *
   * @example
   * const audit = createDispatcher({ concurrency: 8, maxQueue: 100, guard: app.guard })
   * app.post('/orders', async (req, res) => {
   *   const order = await audit.run((signal) => db.insert(req.body, { signal }))
   *   res.json(order)
   * })
   */
  run<T>(fn: DispatchedWork<T>, options?: RunOptions): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(invalid('fn', 'a function', fn))
    return this.submit(fn, options, undefined) as Promise<T>
  }

  protected start(task: Task): void {
    const fn = task.work as DispatchedWork<unknown>
    const signal = task.execSignal!
    let result: unknown
    try {
      result = task.context === undefined ? fn(signal) : task.context.runInAsyncScope(fn, undefined, signal)
    } catch (error) {
      this.settle(task, false, error)
      return
    }
    if (isThenable(result)) {
      result.then(
        (value) => this.settle(task, true, value),
        (error: unknown) => this.settle(task, false, error),
      )
    } else {
      this.settle(task, true, result)
    }
  }

  protected abortRunning(task: Task, reason: unknown): void {
    task.controller?.abort(reason)
  }

  protected defaultSignal(): AbortSignal {
    return (this.#lifetime ??= new AbortController()).signal
  }

  protected shutdownExecutor(): Promise<void> {
    this.#lifetime?.abort(new PoolClosedError())
    return Promise.resolve()
  }
}

/**
 * Creates a bounded async pool. Options are checked here, once.
 *
 * @example
 * const enrich = createDispatcher({ concurrency: 16, maxQueue: 200, queueTimeout: 2_000, maxPerRequest: 4 })
 * const rows = await Promise.all(ids.map((id) => enrich.run((signal) => fetchRow(id, { signal }))))
 */
export function createDispatcher(options?: DispatcherOptions): Dispatcher {
  return new Dispatcher(options)
}
