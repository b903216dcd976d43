import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { isAbsolute } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ResourceLimits, Worker } from 'node:worker_threads'
import { Piscina } from 'piscina'
import { PoolClosedError, WorkerError, WorkerExitError, WorkerResourceLimitsError } from '../errors.js'
import { checkKeys, integer, invalid, millisecondsOrFalse } from '../options.js'
import { Admission } from './admission.js'
import { admissionKeys, resolveAdmission, type AdmissionOptions, type RunOptions } from './options.js'
import type { Task } from './task.js'

/**
 * What a worker's `transferList` may hold. Derived from `Worker#postMessage` rather than named:
 * @types/node 26 dropped `TransferListItem` from `node:worker_threads` (it is `Transferable` there),
 * and a consumer's `tsc --strict` without `skipLibCheck` must pass on @types/node 20 to 26.
 */
export type TransferListItem = NonNullable<Parameters<Worker['postMessage']>[1]>[number]

export interface ThreadPoolOptions extends AdmissionOptions {
  /**
   * The worker module: an absolute path or a `file:` URL. Its default export (or the export named by
   * `run(…, { name })`) is called with the task's payload; piscina's worker conventions apply.
   */
  filename: string | URL
  /**
   * Worker threads, i.e. tasks that may run at once. They start with the pool and stay warm.
   * @default os.availableParallelism()
   */
  threads?: number
  /**
   * Let threads beyond the first exit after this many idle milliseconds (they are started again when
   * work arrives). `false` keeps every thread warm.
   * @default false
   */
  idleTimeout?: number | false
  /**
   * `worker_threads` resource limits for each thread. A task that exceeds them rejects with
   * `LG_ERR_WORKER_RESOURCE_LIMITS` and its thread is replaced.
   * @default undefined
   */
  resourceLimits?: ResourceLimits
  /**
   * Passed to every thread as `workerData`.
   * @default undefined
   */
  workerData?: unknown
  /**
   * Node.js flags for the threads. By default they inherit the process's (including loaders given with
   * `--import`, which slow down every thread start); `[]` starts them with none.
   * @default process.execArgv
   */
  execArgv?: string[]
  /**
   * `process.env` of the threads. Note that `NODE_OPTIONS` in it applies to every thread start (a
   * `--import` loader there makes each start, and so each replacement after an abort, much slower).
   * @default process.env
   */
  env?: Record<string, string | undefined>
}

export interface ThreadRunOptions extends RunOptions {
  /** Objects to transfer rather than copy. @default undefined */
  transferList?: readonly TransferListItem[]
  /** The worker module's export to call. @default 'default' */
  name?: string
}

const threadPoolKeys = ['filename', 'threads', 'idleTimeout', 'resourceLimits', 'workerData', 'execArgv', 'env', ...admissionKeys] as const
const resourceLimitKeys = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb']

const EXIT_MESSAGE = /^worker exited with code: (-?\d+)/

function noop(): void {}

/**
 * CPU-bound work on a bounded pool of worker threads (piscina 5 underneath), with leak-guard's
 * admission in front: piscina is handed a task only when a thread is free, one task per thread.
 *
 * A task whose request ends while it runs is aborted at once and its thread terminated and replaced:
 * a busy loop cannot outlive the request. A thread that dies (uncaught error, `process.exit()`,
 * `resourceLimits`) rejects its task with a coded error and is replaced.
 */
export class ThreadPool extends Admission {
  protected readonly ownSignal = true
  protected readonly keepsContext = false
  readonly #piscina: Piscina
  /** >0 while leak-guard itself terminates a thread (an abort), so it is not taken for a crash. */
  #killing = 0
  /**
   * >0 during the microtasks right after piscina dropped a thread we did not kill. piscina removes the
   * dead thread and rejects its task synchronously one after the other, so a rejection seen in this
   * window is the crash, not an error the task threw.
   */
  #crashWindow = 0

  /** @internal Use `createThreadPool()`. */
  constructor(options: ThreadPoolOptions) {
    const o = checkKeys('createThreadPool()', options, threadPoolKeys)
    let filename = o.filename
    if (filename instanceof URL) {
      if (filename.protocol !== 'file:') throw invalid('filename', 'an absolute path or a `file:` URL', String(filename))
      filename = fileURLToPath(filename)
    }
    if (typeof filename !== 'string' || filename === '') throw invalid('filename', 'an absolute path or a `file:` URL', o.filename)
    const path = filename.startsWith('file:') ? fileURLToPath(filename) : filename
    // A relative path would be resolved against the worker's cwd at the first run(), and a missing file
    // would only surface there as LG_ERR_WORKER_ERROR: both are mistakes of the call, said here.
    if (!isAbsolute(path)) throw invalid('filename', 'an absolute path or a `file:` URL', filename)
    if (!existsSync(path)) throw invalid('filename', 'the path of an existing file', filename)
    const threads = integer('threads', o.threads, Math.max(1, availableParallelism()), 1, 1024)
    const idleTimeout = millisecondsOrFalse('idleTimeout', o.idleTimeout, false)
    const limits = o.resourceLimits
    if (limits !== undefined) {
      if (limits === null || typeof limits !== 'object' || Array.isArray(limits)) throw invalid('resourceLimits', 'an object of worker_threads resource limits', limits)
      for (const [key, value] of Object.entries(limits)) {
        if (!resourceLimitKeys.includes(key)) throw invalid(`resourceLimits.${key}`, `one of ${resourceLimitKeys.join(', ')}`, key)
        if (typeof value !== 'number' || !(value > 0)) throw invalid(`resourceLimits.${key}`, 'a positive number', value)
      }
    }
    const execArgv = o.execArgv
    if (execArgv !== undefined && (!Array.isArray(execArgv) || !execArgv.every((a) => typeof a === 'string'))) {
      throw invalid('execArgv', 'an array of strings', execArgv)
    }
    const env = o.env
    if (env !== undefined && (env === null || typeof env !== 'object' || Array.isArray(env))) throw invalid('env', 'an object of environment variables', env)
    super(resolveAdmission(o, threads))
    this.#piscina = new Piscina({
      filename: path,
      minThreads: idleTimeout === false ? threads : 1,
      maxThreads: threads,
      idleTimeout: idleTimeout === false ? Infinity : idleTimeout,
      concurrentTasksPerWorker: 1,
      // Our admission already bounds what reaches piscina to one task per thread.
      maxQueue: Infinity,
      resourceLimits: limits as ResourceLimits | undefined,
      workerData: o.workerData,
      ...(execArgv === undefined ? {} : { execArgv }),
      ...(env === undefined ? {} : { env: env as Record<string, string> }),
      recordTiming: false,
    })
    // piscina emits 'error' when an idle thread dies; without a listener that would crash the process.
    this.#piscina.on('error', noop)
    this.#piscina.on('workerDestroy', () => {
      if (this.#killing > 0 || this.destroyed) return
      this.#crashWindow++
      // Two hops: the rejection handler of the dead thread's task runs in the first microtask after
      // piscina rejects it, which is after ours is queued.
      queueMicrotask(() => queueMicrotask(() => this.#crashWindow--))
    })
  }

  /** Threads alive now (including ones starting up to replace a dead or killed thread). */
  get threads(): number {
    return this.#piscina.threads.length
  }

  /**
   * Runs `payload` on a worker thread when one is free. Inside a request the task dies with the
   * request: dropped if still queued, its thread terminated if running.
   *
   * Rejects with `PoolFullError` (503 + `Retry-After`), `PoolQueueTimeoutError`, `PoolClosedError`, the
   * abort reason, `WorkerError` / `WorkerExitError` / `WorkerResourceLimitsError` when the thread died,
   * or with the error the task itself threw.
   *
   * @example
   * const images = createThreadPool({ filename: new URL('./resize.mjs', import.meta.url), threads: 2, maxQueue: 20, guard })
   * app.post('/thumb', async (req, res) => res.send(await images.run({ data: req.body })))
   */
  run<T = unknown>(payload: unknown, options?: ThreadRunOptions): Promise<T> {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      return Promise.reject(invalid('options', 'an object', options))
    }
    return this.submit(payload, options, options) as Promise<T>
  }

  protected start(task: Task): void {
    const extra = task.options as ThreadRunOptions | undefined
    // No options object at all for the common task (piscina then uses its defaults).
    let runOptions: { signal?: AbortSignal; transferList?: TransferListItem[]; name?: string } | undefined
    if (task.controller !== undefined || extra?.transferList !== undefined || extra?.name !== undefined) {
      runOptions = { signal: task.execSignal, transferList: extra?.transferList as TransferListItem[] | undefined, name: extra?.name }
    }
    this.#piscina.run(task.work, runOptions).then(
      (value: unknown) => this.settle(task, true, value),
      (error: unknown) => this.settle(task, false, this.#classify(task, error)),
    )
  }

  #classify(task: Task, error: unknown): unknown {
    if (task.abortReason !== undefined) return task.abortReason
    if (this.destroyed) return new PoolClosedError()
    const e = error as { code?: unknown; message?: unknown } | null
    if (e !== null && typeof e === 'object') {
      if (e.code === 'ERR_WORKER_OUT_OF_MEMORY') return new WorkerResourceLimitsError(error)
      const exit = typeof e.message === 'string' ? EXIT_MESSAGE.exec(e.message) : null
      if (exit !== null && this.#crashWindow > 0) return new WorkerExitError(Number(exit[1]), error)
    }
    if (this.#crashWindow > 0) return new WorkerError(error)
    return error
  }

  protected abortRunning(task: Task, reason: unknown): void {
    // destroy() terminates every thread at once; killing them one by one would start replacements.
    if (this.destroyed) return
    this.#killing++
    try {
      // piscina rejects the task and, if a thread runs it, terminates that thread and starts a new one.
      task.controller?.abort(reason)
    } finally {
      this.#killing--
    }
  }

  /** A task nothing can abort gets no signal: piscina then skips its abort bookkeeping. */
  protected defaultSignal(): undefined {
    return undefined
  }

  protected async shutdownExecutor(): Promise<void> {
    try {
      await this.#piscina.destroy()
    } finally {
      this.#piscina.removeAllListeners()
    }
  }
}

/**
 * Creates a worker-thread pool. Options are checked here, once; threads start at once.
 *
 * @example
 * const pool = createThreadPool({ filename: new URL('./hash.mjs', import.meta.url), threads: 2, maxQueue: 50, queueTimeout: 1_000, guard: app.guard })
 * app.get('/hash', async (req, res) => res.send(await pool.run(req.query.input)))
 */
export function createThreadPool(options: ThreadPoolOptions): ThreadPool {
  return new ThreadPool(options)
}
