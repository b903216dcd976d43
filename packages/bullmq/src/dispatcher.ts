import { QueueEvents, type Job, type JobsOptions, type Queue } from 'bullmq'
import {
  currentScope,
  trackWork,
  subscribeAbort,
  checkKeys,
  integer,
  integerOrFalse,
  invalid,
  type Closeable,
  type Guard,
  type RequestScope,
} from '@leak-guard/core/adapter'
import {
  JobFailedError,
  LeakGuardError,
  PoolClosedError,
  PoolFullError,
  QueueUnavailableError,
  RequestEndedError,
  ShutdownError,
  TimeoutError,
} from '@leak-guard/core'
import { CANCEL_CHANNEL, CANCEL_FIELD, CANCEL_SCRIPT, DEADLINE_OPTION, MAX_TIMER, encodeCancel, redisOf } from './protocol.js'

export interface QueueDispatcherOptions {
  /** The BullMQ `Queue` jobs are added to. It stays yours: `close()` does not close it. */
  queue: Queue
  /**
   * The guard of the app. When given, the dispatcher is registered with it so shutdown closes it, and a
   * `run()` job still running `leakGracePeriod` after its request ended is reported as a `'leak'` of
   * kind `job`.
   * @default undefined
   */
  guard?: Guard | undefined
  /**
   * Jobs that may wait in the queue (waiting, prioritised, delayed, paused). Beyond it `run()` and
   * `enqueue()` reject at once with `PoolFullError` (`LG_ERR_POOL_FULL`, 503 + `Retry-After`). The depth
   * is counted in Redis at most once per `countInterval` and kept current in between by this
   * dispatcher's own adds. `false` for no bound.
   * @default 1000
   */
  maxWaiting?: number | false
  /**
   * How often, at most, the queue depth is read from Redis for admission, in milliseconds. Only calls
   * trigger a read: an idle dispatcher makes none.
   * @default 250
   */
  countInterval?: number
  /**
   * Deadline of a `run()` made outside a request, in milliseconds; inside a request the request's own
   * deadline applies and this may only shorten it. `false` for none.
   * @default false
   */
  timeout?: number | false
}

/** Options of one `run()`: BullMQ's job options plus these. */
export interface RunJobOptions extends JobsOptions {
  /**
   * Cancels the job: removed if still waiting, its worker's signal aborted if active.
   * @default undefined
   */
  signal?: AbortSignal | undefined
  /**
   * The request the job belongs to. By default the current one (`currentScope()`); `null` for none.
   * @default currentScope()
   */
  scope?: RequestScope | null | undefined
  /**
   * Deadline of this job in milliseconds from now; may only shorten the request's.
   * @default the dispatcher's `timeout`
   */
  timeout?: number | false | undefined
}

/** Options of one `enqueue()`: BullMQ's job options plus these. */
export interface EnqueueJobOptions extends JobsOptions {
  /**
   * Deadline of the job in milliseconds from now: a worker does not start it later and aborts it then.
   * `false` or unset: none. Not tied to the request.
   * @default false
   */
  timeout?: number | false | undefined
  /**
   * Cancel the job (remove it, or abort it on its worker) when this dispatcher closes.
   * @default false
   */
  cancelOnClose?: boolean | undefined
}

export interface QueueDispatcherStats {
  /** `run()` promises not settled yet. */
  pending: number
  /** `run()` jobs whose outcome this dispatcher still waits for (pending, or cancelled and not ended yet). */
  tracked: number
  /** Queue depth used for admission: the last count plus this dispatcher's adds since. */
  waiting: number
  /** Jobs added by `run()` and `enqueue()`. */
  added: number
  /** `run()` calls that resolved with the job's result. */
  completed: number
  /** `run()` calls that rejected because the job failed (`LG_ERR_JOB_FAILED`). */
  failed: number
  /** Calls refused by admission (`LG_ERR_POOL_FULL`). */
  rejected: number
  /**
   * Cancelled jobs that `remove()` took out of the queue: those still waiting, and those a worker had
   * already failed at their deadline (the worker's timer and the producer's cancel race) but not yet deleted.
   */
  removed: number
  /** Cancelled jobs that were active (or gone) and were signalled through Redis. */
  cancelled: number
}

const RETRY_MIN = 1
const RETRY_MAX = 60
/** Weight of the newest gap between two finished jobs in the moving average `Retry-After` uses. */
const EWMA = 0.1
/** How long `close()` waits for the cancels of its pending jobs to reach Redis. */
const CLOSE_CANCEL_WAIT = 2_000

const TIMEOUT_PREFIX = `${new TimeoutError(0).code}:`

const optionKeys = ['queue', 'guard', 'maxWaiting', 'countInterval', 'timeout'] as const

function noop(): void {}

/** One `run()` (or a tracked `enqueue()`): from the add to the job's last event. */
class Pending {
  readonly id: string
  settled = false
  resolve: (value: unknown) => void = noop
  reject: (error: unknown) => void = noop
  /** The add, resolved once the job exists in Redis (or rejected). */
  added: Promise<unknown> | undefined
  timer: NodeJS.Timeout | undefined
  disposeAbort: (() => void) | undefined
  signal: AbortSignal | undefined
  onSignal: (() => void) | undefined
  untrack: (() => void) | undefined
  /** The timeout behind the job's deadline, in ms, for the `TimeoutError` a deadline failure becomes. */
  timeout: number | undefined
  /** Only `enqueue()`d jobs with `cancelOnClose`: they have no promise to settle. */
  readonly detached: boolean

  constructor(id: string, detached: boolean) {
    this.id = id
    this.detached = detached
  }
}

let instances = 0

/**
 * A producer for a BullMQ queue whose jobs die with their request. See `createQueueDispatcher()`.
 */
export class QueueDispatcher implements Closeable {
  readonly queue: Queue
  #unregister: (() => void) | undefined
  #maxWaiting: number | false
  #countInterval: number
  #timeout: number | false
  #events: QueueEvents | undefined
  #ready: Promise<void>
  #up = false
  #closed = false
  #closing: Promise<void> | undefined
  #pending = new Map<string, Pending>()
  #unsettled = 0
  // Job ids are ours unless the caller gives one, so the waiter is registered before the add and no
  // event can arrive unclaimed. The prefix tells apart dispatchers (and processes) on one queue.
  #idPrefix = `lg-${process.pid.toString(36)}-${(++instances).toString(36)}-${Math.random().toString(36).slice(2, 8)}-`
  #seq = 0
  #depth = 0
  #addsSinceCount = 0
  #countedAt = -Infinity
  #counting = false
  #lastFinish = 0
  #meanGap = 0
  #stats = { added: 0, completed: 0, failed: 0, rejected: 0, removed: 0, cancelled: 0 }
  #unwatch: Array<() => void> = []

  constructor(options: QueueDispatcherOptions) {
    const o = checkKeys('createQueueDispatcher()', options, optionKeys)
    const queue = o.queue as Queue | undefined
    if (queue === null || typeof queue !== 'object' || typeof (queue).add !== 'function' || typeof (queue).toKey !== 'function') {
      throw invalid('queue', 'a BullMQ `Queue`', queue)
    }
    const guard = o.guard as Guard | undefined
    if (guard !== undefined && (guard === null || typeof guard !== 'object' || typeof guard.register !== 'function')) {
      throw invalid('guard', 'a leak-guard `Guard`', guard)
    }
    this.queue = queue
    this.#maxWaiting = integerOrFalse('maxWaiting', o.maxWaiting, 1000, 0)
    this.#countInterval = integer('countInterval', o.countInterval, 250)
    this.#timeout = integerOrFalse('timeout', o.timeout, false)
    this.#unregister = guard?.register(this)
    this.#ready = this.#start()
    // A start that fails is answered per call (QueueUnavailableError); never an unhandled rejection.
    this.#ready.catch(noop)
  }

  /** Connects the result stream. Reads the stream's last id first, so no event after it is missed. */
  async #start(): Promise<void> {
    const client = await redisOf(this.queue.client)
    const last = await client.xrevrange(this.queue.keys.events, '+', '-', 'COUNT', 1)
    if (this.#closed) return
    const events = new QueueEvents(this.queue.name, {
      connection: this.queue.opts.connection,
      prefix: this.queue.opts.prefix,
      lastEventId: last[0]?.[0] ?? '0-0',
    })
    this.#events = events
    events.on('error', noop) // connection errors are handled through the clients' 'close' below
    events.on('completed', ({ jobId, returnvalue }) => this.#finished(jobId, true, returnvalue))
    events.on('failed', ({ jobId, failedReason }) => this.#finished(jobId, false, failedReason))
    events.on('removed', ({ jobId }) => this.#finished(jobId, false, 'removed', true))
    await events.waitUntilReady()
    if (this.#closed) {
      await events.close() // close() may have run before this QueueEvents existed
      return
    }
    const eventsClient = await redisOf(events.client)
    for (const c of [client, eventsClient]) {
      const down = (): void => this.#down()
      const up = (): void => {
        if (client.status === 'ready' && eventsClient.status === 'ready') this.#up = true
      }
      c.on('close', down)
      c.on('ready', up)
      this.#unwatch.push(() => {
        c.removeListener('close', down)
        c.removeListener('ready', up)
      })
    }
    this.#up = client.status === 'ready' && eventsClient.status === 'ready'
  }

  /**
   * Adds a job and resolves with its result. Inside a request the job carries the request's absolute
   * deadline and is tied to it: when the request ends first, the promise rejects with the request's
   * reason, a job still waiting is removed and an active one is cancelled on its worker.
   */
  run<R = unknown>(name: string, data?: unknown, options?: RunJobOptions): Promise<R> {
    const scope = options?.scope === undefined ? currentScope() : options.scope
    const refused = this.#refuse()
    if (refused !== undefined) return Promise.reject(refused)
    if (scope?.aborted) return Promise.reject(scope.reason)
    const signal = options?.signal
    if (signal?.aborted) return Promise.reject(signal.reason)
    const timeout = options?.timeout === undefined ? this.#timeout : options.timeout
    let deadline = scope === null || scope === undefined ? Infinity : scope.deadline
    if (timeout !== false) deadline = Math.min(deadline, Date.now() + timeout)

    const id = options?.jobId ?? this.#idPrefix + (++this.#seq).toString(36)
    const pending = new Pending(id, false)
    const promise = new Promise<R>((resolve, reject) => {
      pending.resolve = resolve as (value: unknown) => void
      pending.reject = reject
    })
    this.#pending.set(id, pending)
    this.#unsettled++
    if (scope !== null && scope !== undefined) {
      pending.disposeAbort = subscribeAbort(scope, (reason) => this.#abort(pending, reason))
      pending.untrack = trackWork(scope, 'job', () => `${this.queue.name}:${name}#${id}`)
    }
    if (signal !== undefined) {
      pending.signal = signal
      pending.onSignal = () => this.#abort(pending, signal.reason)
      signal.addEventListener('abort', pending.onSignal, { once: true })
    }
    if (timeout !== false && deadline < (scope?.deadline ?? Infinity) && timeout <= MAX_TIMER) {
      // Our own deadline comes first; otherwise the request's timer fires at its deadline.
      const ms = timeout
      pending.timeout = ms
      pending.timer = setTimeout(() => this.#abort(pending, new TimeoutError(ms)), Math.max(0, deadline - Date.now()))
      pending.timer.unref()
    } else if (scope?.timeout !== undefined && scope.timeout !== false) pending.timeout = scope.timeout
    const jobOptions = stripRunOptions(options)
    jobOptions.jobId = id
    // Results travel on the events stream, so the job itself need not be kept (see the README).
    jobOptions.removeOnComplete ??= true
    jobOptions.removeOnFail ??= true
    // Whole epoch milliseconds, rounded down: the job's deadline is never later than its request's.
    if (deadline !== Infinity) (jobOptions as Record<string, unknown>)[DEADLINE_OPTION] = Math.floor(deadline)
    pending.added = this.#add(name, data, jobOptions, pending)
    return promise
  }

  /**
   * Adds a job that outlives the request (the `detach` of the queue world) and resolves with the `Job`
   * once it is in Redis. It is not cancelled when the request ends; it has a deadline only when given
   * one, and is cancelled on `close()` only with `cancelOnClose`. Admission applies.
   */
  enqueue<T = unknown>(name: string, data?: T, options?: EnqueueJobOptions): Promise<Job<T>> {
    const refused = this.#refuse()
    if (refused !== undefined) return Promise.reject(refused)
    const timeout = options?.timeout ?? false
    const jobOptions = stripRunOptions(options)
    if (timeout !== false) (jobOptions as Record<string, unknown>)[DEADLINE_OPTION] = Date.now() + timeout
    let pending: Pending | undefined
    if (options?.cancelOnClose === true) {
      const id = options.jobId ?? this.#idPrefix + (++this.#seq).toString(36)
      jobOptions.jobId = id
      pending = new Pending(id, true)
      this.#pending.set(id, pending)
    }
    const add = this.#enqueue<T>(name, data, jobOptions)
    if (pending !== undefined) {
      const p = pending
      p.added = add.catch(() => {
        this.#forget(p)
        return undefined
      })
    }
    return add
  }

  async #enqueue<T>(name: string, data: T | undefined, jobOptions: JobsOptions): Promise<Job<T>> {
    try {
      await this.#ready
      if (!this.#up) throw new QueueUnavailableError()
      this.#addsSinceCount++
      this.#stats.added++
      return (await this.queue.add(name, data, jobOptions)) as Job<T>
    } catch (error) {
      throw this.#up || error instanceof QueueUnavailableError ? error : new QueueUnavailableError(error)
    }
  }

  /** Why a call is refused at once, if it is: closed, Redis down, or the queue full. */
  #refuse(): LeakGuardError | undefined {
    if (this.#closed) return new PoolClosedError()
    if (!this.#up && this.#events !== undefined) return new QueueUnavailableError()
    const max = this.#maxWaiting
    if (max === false) return undefined
    this.#count()
    if (this.#depth + this.#addsSinceCount >= max) {
      this.#stats.rejected++
      return new PoolFullError(this.retryAfter())
    }
    return undefined
  }

  /** Refreshes the depth from Redis if the last count is older than `countInterval` (one read at a time). */
  #count(): void {
    const now = performance.now()
    if (this.#counting || now - this.#countedAt < this.#countInterval || !this.#up) return
    this.#counting = true
    const addsBefore = this.#addsSinceCount
    this.queue.getJobCountByTypes('wait', 'paused', 'prioritized', 'delayed').then(
      (depth) => {
        this.#depth = depth
        // Adds made while counting may or may not be in the count; keeping them errs on the safe side.
        this.#addsSinceCount -= addsBefore
        this.#countedAt = performance.now()
        this.#counting = false
      },
      () => {
        this.#counting = false
      },
    )
  }

  /**
   * `Retry-After` in seconds: the time the queue needs to drain its depth at the recent mean gap between
   * two finished jobs (of any producer), bounded to 1–60 s.
   */
  retryAfter(): number {
    const seconds = Math.ceil(((this.#depth + this.#addsSinceCount + 1) * this.#meanGap) / 1000)
    return seconds < RETRY_MIN ? RETRY_MIN : seconds > RETRY_MAX ? RETRY_MAX : seconds
  }

  async #add(name: string, data: unknown, jobOptions: JobsOptions, pending: Pending): Promise<unknown> {
    try {
      await this.#ready.catch(noop)
      if (pending.settled) return undefined // aborted before it was added: never add it
      return await this.#enqueue(name, data, jobOptions)
    } catch (error) {
      this.#forget(pending)
      this.#settle(pending, false, error)
      return undefined // nothing was added: nothing to cancel
    }
  }

  /** The job's last event: settles its `run()` and stops tracking it. */
  #finished(jobId: string, ok: boolean, value: unknown, removed = false): void {
    const now = performance.now()
    if (!removed) {
      if (this.#lastFinish !== 0) this.#meanGap += (now - this.#lastFinish - this.#meanGap) * EWMA
      this.#lastFinish = now
    }
    const pending = this.#pending.get(jobId)
    if (pending === undefined) return
    this.#forget(pending)
    if (pending.settled) return
    if (ok) this.#stats.completed++
    else this.#stats.failed++
    this.#settle(pending, ok, ok ? value : this.#failure(pending, String(value)))
  }

  /**
   * A worker fails a job at its deadline (`LG_ERR_TIMEOUT: ...`), often before this process's own timer
   * for the same deadline fires: that is this call's timeout, not a failure of the job.
   */
  #failure(pending: Pending, failedReason: string): LeakGuardError {
    if (pending.timeout !== undefined && failedReason.startsWith(TIMEOUT_PREFIX)) return new TimeoutError(pending.timeout)
    return new JobFailedError(pending.id, failedReason)
  }

  #settle(pending: Pending, ok: boolean, value: unknown): void {
    if (pending.settled || pending.detached) return
    pending.settled = true
    this.#unsettled--
    if (pending.timer !== undefined) clearTimeout(pending.timer)
    pending.disposeAbort?.()
    if (pending.onSignal !== undefined) pending.signal?.removeEventListener('abort', pending.onSignal)
    pending.disposeAbort = pending.onSignal = pending.signal = pending.timer = undefined
    if (ok) pending.resolve(value)
    else pending.reject(value)
  }

  /** Stops tracking a job (its outcome is known, or can no longer be learnt). */
  #forget(pending: Pending): void {
    if (this.#pending.get(pending.id) === pending) this.#pending.delete(pending.id)
    pending.untrack?.()
    pending.untrack = undefined
  }

  /** The request ended, the signal aborted or the deadline passed: reject now, then cancel the job. */
  #abort(pending: Pending, reason: unknown): void {
    if (pending.settled) return
    this.#settle(pending, false, reason)
    void this.#cancel(pending, reason)
  }

  /**
   * Cancels a job: removed if it has not started (BullMQ refuses to remove a locked, i.e. active, job,
   * which is exactly the race with a worker taking it), otherwise signalled to whichever worker runs it.
   */
  async #cancel(pending: Pending, reason: unknown): Promise<void> {
    if ((await pending.added) === undefined) return this.#forget(pending) // never added
    const code = reason instanceof LeakGuardError ? reason.code : new RequestEndedError().code
    try {
      if ((await this.queue.remove(pending.id)) === 1) {
        this.#stats.removed++
        this.#forget(pending)
        return
      }
      const client = await redisOf(this.queue.client)
      await client.eval(CANCEL_SCRIPT, 2, this.queue.toKey(pending.id), this.queue.toKey(CANCEL_CHANNEL), CANCEL_FIELD, code, encodeCancel(pending.id, code))
      this.#stats.cancelled++
      // Stay tracked until the job's 'failed' event: a processor that ignores its signal shows as a leak.
    } catch {
      this.#forget(pending) // Redis is gone; #down() answers the rest
    }
  }

  /** A connection to Redis closed: no result can arrive, so every waiting `run()` rejects now. */
  #down(): void {
    if (!this.#up) return
    this.#up = false
    for (const pending of [...this.#pending.values()]) {
      this.#forget(pending)
      this.#settle(pending, false, new QueueUnavailableError())
    }
  }

  stats(): QueueDispatcherStats {
    let tracked = 0
    for (const p of this.#pending.values()) if (!p.detached) tracked++
    return { pending: this.#unsettled, tracked, waiting: this.#depth + this.#addsSinceCount, ...this.#stats }
  }

  /**
   * Stops the dispatcher: new calls reject with `LG_ERR_POOL_CLOSED`, pending `run()`s reject with
   * `LG_ERR_SHUTDOWN` and their jobs are cancelled (as are `enqueue()`d jobs with `cancelOnClose`),
   * then the result stream closes. The queue itself stays open. Idempotent.
   */
  close(): Promise<void> {
    return (this.#closing ??= this.#close())
  }

  async #close(): Promise<void> {
    this.#closed = true
    this.#unregister?.()
    const cancels: Array<Promise<void>> = []
    const reason = new ShutdownError()
    for (const pending of [...this.#pending.values()]) {
      if (!pending.settled && !pending.detached) this.#settle(pending, false, reason)
      if (this.#up) cancels.push(this.#cancel(pending, reason))
      else this.#forget(pending)
    }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.allSettled(cancels), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_CANCEL_WAIT)))])
    clearTimeout(timer)
    for (const pending of [...this.#pending.values()]) this.#forget(pending)
    // Not waiting for the start: with Redis unreachable it may never finish (its QueueEvents, if made
    // by then, is closed below; #start stops at its next step).
    for (const unwatch of this.#unwatch) unwatch()
    this.#unwatch = []
    await this.#events?.close().catch(noop)
  }
}

/** BullMQ's job options without ours. */
function stripRunOptions(options: RunJobOptions | EnqueueJobOptions | undefined): JobsOptions {
  if (options === undefined) return {}
  const { signal: _s, scope: _c, timeout: _t, cancelOnClose: _o, ...rest } = options as RunJobOptions & EnqueueJobOptions
  return rest
}

/**
 * Creates a producer for `queue` whose jobs die with their request: `run()` ties a job to the current
 * request (deadline carried in the job, removed or cancelled across processes when the request ends),
 * `enqueue()` adds one that outlives it. Options are checked here, once (`LG_ERR_INVALID_OPTION`).
 *
 * @example
 * const reports = createQueueDispatcher({ queue: new Queue('reports', { connection }), guard })
 * app.get('/report', async (req, res) => res.json(await reports.run('build', { id: req.query.id })))
 */
export function createQueueDispatcher(options: QueueDispatcherOptions): QueueDispatcher {
  return new QueueDispatcher(options)
}
