import { UnrecoverableError, Worker, type Job, type WorkerOptions } from 'bullmq'
import { integer, invalid, type Closeable, type Guard } from '@leak-guard/core/adapter'
import { JobCancelledError, LeakGuardError, ShutdownError, TimeoutError } from '@leak-guard/core'
import { CANCEL_CHANNEL, CANCEL_FIELD, MAX_TIMER, deadlineOf, decodeCancel, redisOf, type RedisClient } from './protocol.js'

/** A processor: BullMQ's job and an AbortSignal that aborts when the job is cancelled. */
// `any` defaults as BullMQ's own `Job<DataType = any, ReturnType = any>`, so untyped processors read as they do there.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type QueueProcessor<T = any, R = any> = (job: Job<T, R>, signal: AbortSignal) => Promise<R>

/** BullMQ's own `WorkerOptions` (passed through) plus these. */
export interface QueueWorkerOptions extends WorkerOptions {
  /**
   * The guard of the worker process. When given, the worker is registered with it so shutdown closes
   * it, and a processor still running `leakGracePeriod` after its job was cancelled is reported as a
   * `'leak'` of kind `job`.
   * @default undefined
   */
  guard?: Guard | undefined
  /**
   * How long `close()` lets active jobs finish, in milliseconds, before it aborts their signals with
   * `ShutdownError`.
   * @default 10000
   */
  closeTimeout?: number | undefined
}

export interface QueueWorkerStats {
  /** Processors running now. */
  active: number
  /** Processors called. */
  started: number
  /** Jobs failed without calling the processor: their deadline had passed (`LG_ERR_TIMEOUT`). */
  expired: number
  /** Jobs failed without calling the processor: cancelled before they started (`LG_ERR_JOB_CANCELLED`). */
  skipped: number
  /** Running jobs whose signal aborted, by why: `cancel` (producer), `deadline`, `close`. */
  aborted: { cancel: number; deadline: number; close: number }
  /** Processors still running `leakGracePeriod` after their signal aborted. */
  leaks: number
}

/**
 * How long a cancel for a job this worker does not run (yet) is remembered: it covers the moment
 * between BullMQ moving the job to active and the processor being called, when the message can come
 * first. Later starts (after a stall) read the durable marker instead.
 */
const EARLY_CANCEL_TTL = 10_000
/** Leak grace when the worker has no guard to take it from. */
const DEFAULT_LEAK_GRACE = 1_000

function noop(): void {}

/**
 * The error a job fails with, `<code>: <text>` (BullMQ keeps only the message as `failedReason`). A
 * shutdown is no fault of the job: it follows the job's `attempts` like any failure (another worker may
 * retry it). A cancel or a passed deadline is final (`UnrecoverableError`: no retry).
 */
function failure(reason: LeakGuardError, text: string): Error {
  const message = `${reason.code}: ${text}`
  return reason instanceof ShutdownError ? new Error(message) : new UnrecoverableError(message)
}

/** One processor call. */
class Active {
  readonly job: Job
  readonly controller = new AbortController()
  timer: NodeJS.Timeout | undefined
  leakTimer: NodeJS.Timeout | undefined
  abortedAt = 0
  constructor(job: Job) {
    this.job = job
  }
}

/**
 * A BullMQ `Worker` whose processor gets an AbortSignal tied to the job's producer. See
 * `createQueueWorker()`.
 */
export class QueueWorker implements Closeable {
  /** The BullMQ worker (for its events: `'completed'`, `'failed'`, `'error'`, ...). */
  readonly worker: Worker
  #processor: QueueProcessor
  #guard: Guard | undefined
  #unregister: (() => void) | undefined
  #closeTimeout: number
  #leakGrace: number
  #active = new Map<string, Active>()
  #early = new Map<string, { code: string; until: number }>()
  #subscriber: RedisClient | undefined
  #ready: Promise<void>
  #closing: Promise<void> | undefined
  #stats: QueueWorkerStats = { active: 0, started: 0, expired: 0, skipped: 0, aborted: { cancel: 0, deadline: 0, close: 0 }, leaks: 0 }

  constructor(queueName: string, processor: QueueProcessor, options: QueueWorkerOptions) {
    if (typeof queueName !== 'string' || queueName === '') throw invalid('queueName', 'a non-empty string', queueName)
    if (typeof processor !== 'function') throw invalid('processor', 'a function', processor)
    if (options === null || typeof options !== 'object') throw invalid('options', 'BullMQ worker options with `connection`', options)
    const { guard, closeTimeout, autorun, ...bullOptions } = options
    if (guard !== undefined && (guard === null || typeof guard !== 'object' || typeof guard.register !== 'function')) {
      throw invalid('guard', 'a leak-guard `Guard`', guard)
    }
    this.#processor = processor
    this.#guard = guard
    this.#closeTimeout = integer('closeTimeout', closeTimeout, 10_000)
    this.#leakGrace = guard?.leakGracePeriod ?? DEFAULT_LEAK_GRACE
    // Two parameters, not three: BullMQ then makes no AbortController of its own per job.
    this.worker = new Worker(queueName, (job: Job, _token?: string) => this.#process(job), { ...bullOptions, autorun: false })
    this.#unregister = guard?.register(this)
    this.#ready = this.#start(autorun !== false)
    this.#ready.catch(noop)
  }

  /** Subscribes to the queue's cancel channel before taking any job, then starts the worker. */
  async #start(run: boolean): Promise<void> {
    const client = await redisOf(this.worker.client)
    if (this.#closing !== undefined) return
    const subscriber = client.duplicate()
    this.#subscriber = subscriber
    subscriber.on('error', noop) // reconnects on its own; the worker's own 'error' events report outages
    subscriber.on('message', (_channel: string, message: string) => this.#onCancel(message))
    let first = true
    subscriber.on('ready', () => {
      // After a reconnect, messages sent meanwhile are lost: read the durable markers of what runs here.
      if (!first) this.#recheck()
      first = false
    })
    await subscriber.subscribe(this.worker.toKey(CANCEL_CHANNEL))
    if (this.#closing !== undefined) return subscriber.disconnect()
    if (run) this.worker.run().catch(noop) // failures surface as the worker's 'error' events
  }

  /** Resolves once the worker listens for cancels (and, unless `autorun: false`, takes jobs). */
  waitUntilReady(): Promise<void> {
    return this.#ready
  }

  /** Starts taking jobs when created with `autorun: false`. */
  async run(): Promise<void> {
    await this.#ready
    await this.worker.run()
  }

  async #process(job: Job): Promise<unknown> {
    const id = job.id!
    const deadline = deadlineOf(job.opts)
    if (deadline !== undefined && Date.now() >= deadline) {
      this.#stats.expired++
      throw failure(new TimeoutError(0), `the job's deadline passed ${Date.now() - deadline} ms before a worker took it`)
    }
    const early = this.#early.size === 0 ? undefined : this.#early.get(id)
    let code = early !== undefined && early.until > Date.now() ? early.code : undefined
    // A job started again (after a stall) may have been cancelled while no worker held it.
    if (code === undefined && job.attemptsStarted > 1) code = (await (await redisOf(this.worker.client)).hget(this.worker.toKey(id), CANCEL_FIELD)) ?? undefined
    if (code !== undefined) {
      this.#early.delete(id)
      this.#stats.skipped++
      const error = new JobCancelledError(id, code)
      throw failure(error, error.message)
    }
    const active = new Active(job)
    this.#active.set(id, active)
    this.#stats.active++
    this.#stats.started++
    if (deadline !== undefined && deadline - Date.now() <= MAX_TIMER) {
      active.timer = setTimeout(() => this.#abortJob(active, new TimeoutError(0), 'deadline'), deadline - Date.now())
      active.timer.unref()
    }
    const signal = active.controller.signal
    let result: unknown
    try {
      result = await this.#processor(job, signal)
    } catch (error) {
      if (!signal.aborted) throw error
    } finally {
      this.#stats.active--
      this.#active.delete(id)
      clearTimeout(active.timer)
      clearTimeout(active.leakTimer)
    }
    if (!signal.aborted) return result
    // Never completed once its signal aborted, whatever the processor returned.
    const reason = signal.reason as LeakGuardError
    throw failure(reason, reason instanceof TimeoutError ? 'the job ran past its deadline' : reason.message)
  }

  #onCancel(message: string): void {
    const cancel = decodeCancel(message)
    if (cancel === undefined) return
    const active = this.#active.get(cancel.jobId)
    if (active !== undefined) {
      this.#abortJob(active, new JobCancelledError(cancel.jobId, cancel.code), 'cancel')
      return
    }
    // Not here (yet): most are jobs of other workers. Remember it briefly; expired entries go first.
    const now = Date.now()
    for (const [id, entry] of this.#early) {
      if (entry.until > now) break
      this.#early.delete(id)
    }
    this.#early.set(cancel.jobId, { code: cancel.code, until: now + EARLY_CANCEL_TTL })
  }

  #abortJob(active: Active, reason: LeakGuardError, why: keyof QueueWorkerStats['aborted']): void {
    if (active.controller.signal.aborted) return
    this.#stats.aborted[why]++
    clearTimeout(active.timer)
    active.abortedAt = performance.now()
    active.controller.abort(reason)
    active.leakTimer = setTimeout(() => {
      this.#stats.leaks++
      const job = active.job
      this.#guard?.reportUnscopedLeak('job', {
        label: `${job.queueName}:${job.name}#${job.id}`,
        reason: reason instanceof JobCancelledError ? reason.reason : reason.code,
        lateBy: performance.now() - active.abortedAt,
      })
    }, this.#leakGrace)
    active.leakTimer.unref()
  }

  /** Reads the cancel markers of the jobs running here (after the subscriber reconnected). */
  #recheck(): void {
    const ids = [...this.#active.keys()]
    if (ids.length === 0) return
    void redisOf(this.worker.client)
      .then(async (client) => {
        const pipeline = client.pipeline()
        for (const id of ids) pipeline.hget(this.worker.toKey(id), CANCEL_FIELD)
        const results = (await pipeline.exec()) ?? []
        results.forEach(([error, code], i) => {
          const active = this.#active.get(ids[i])
          if (error === null && typeof code === 'string' && active !== undefined) this.#abortJob(active, new JobCancelledError(ids[i], code), 'cancel')
        })
      })
      .catch(noop)
  }

  stats(): QueueWorkerStats {
    return { ...this.#stats, aborted: { ...this.#stats.aborted } }
  }

  /**
   * Graceful close: stops taking jobs, lets active ones finish for `closeTimeout`, then aborts their
   * signals (`LG_ERR_SHUTDOWN`). A processor still running `leakGracePeriod` after that is reported as
   * a leak and no longer waited for. Idempotent; shutdown of the guard calls it.
   */
  close(): Promise<void> {
    return (this.#closing ??= this.#close())
  }

  async #close(): Promise<void> {
    this.#unregister?.()
    // Not waiting for the start: with Redis unreachable it may never finish, and close() must.
    const closed = this.worker.close()
    closed.catch(noop)
    let graceTimer: NodeJS.Timeout | undefined
    let giveUp: NodeJS.Timeout | undefined
    await Promise.race([
      closed,
      new Promise<void>((resolve) => {
        graceTimer = setTimeout(() => {
          const reason = new ShutdownError()
          for (const active of this.#active.values()) this.#abortJob(active, reason, 'close')
          giveUp = setTimeout(resolve, this.#leakGrace + 100)
        }, this.#closeTimeout)
      }),
    ]).catch(noop)
    clearTimeout(graceTimer)
    clearTimeout(giveUp)
    // disconnect(), not quit(): QUIT would wait in ioredis's offline queue while Redis is away.
    this.#subscriber?.disconnect()
  }
}

/**
 * Creates a BullMQ `Worker` for `queueName` whose processor is called as `processor(job, signal)`. The
 * signal aborts when the job's producer cancels it (its request ended; the cancel comes through Redis,
 * from any process), when the job's deadline passes, and when the worker closes. A job whose deadline
 * passed before it was taken fails with `LG_ERR_TIMEOUT` without calling the processor. `options` are
 * BullMQ's `WorkerOptions`, passed through, plus `guard` and `closeTimeout`.
 *
 * @example
 * const worker = createQueueWorker('reports', async (job, signal) => buildReport(job.data, { signal }), { connection, guard })
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- BullMQ's own defaults, as QueueProcessor
export function createQueueWorker<T = any, R = any>(queueName: string, processor: QueueProcessor<T, R>, options: QueueWorkerOptions): QueueWorker {
  return new QueueWorker(queueName, processor as QueueProcessor, options)
}
