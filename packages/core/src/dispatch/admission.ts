import { AsyncResource } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import { PoolClosedError, PoolFullError, PoolQueueTimeoutError } from '../errors.js'
import { invalid } from '../options.js'
import { storage } from '../scope/context.js'
import type { RequestScope } from '../scope/request-scope.js'
import { kSubscribe } from '../symbols.js'
import { captureUserStack } from '../observe/stack.js'
import type { Guard } from '../scope/guard.js'
import { FairQueue } from './fair-queue.js'
import type { ResolvedAdmissionOptions, RunOptions } from './options.js'
import { PoolCounters, type PoolStats } from './stats.js'
import { DONE, Group, QUEUED, RUNNING, Task, armSignal, captureResolvers, isAborted, isSignal, listen, unlisten } from './task.js'

/**
 * The admission layer shared by the async dispatcher and the thread pool. leak-guard counts queued and
 * running tasks itself, so the executors below only ever see work that has a free slot:
 *
 * - a full queue rejects at once with `PoolFullError` (503 + `Retry-After`, from `stats.ts`);
 * - a task that waits longer than `queueTimeout` rejects with `PoolQueueTimeoutError`;
 * - tasks are grouped by the request that submitted them; free slots go round-robin to the groups, and a
 *   group with `maxPerRequest` tasks running is skipped, so one request cannot take the whole pool
 *   (which task gets a slot is decided in `fair-queue.ts`, plain data that this file drives);
 * - a task whose request ended (or whose own signal aborted) while queued is dropped without running; a
 *   running one is aborted, and if it is still running `leakGracePeriod` later it is reported as a leak;
 * - `close()` lets accepted work finish up to `closeTimeout`, then `destroy()`s; both are idempotent.
 *
 * Options are in `options.ts`, the task record and its signal plumbing in `task.ts`.
 */

function noop(): void {}

/**
 * Base of `Dispatcher` and `ThreadPool`: admission, request binding, the queue timeout, stats and the
 * close/destroy lifecycle. Subclasses start and abort tasks.
 */
export abstract class Admission {
  readonly #options: ResolvedAdmissionOptions
  readonly #guard: Guard | undefined
  readonly #unregister: (() => void) | undefined
  readonly #queue: FairQueue<Task>
  /** Tasks without a request. Always exists: most work outside requests goes through it. */
  readonly #free: Group
  readonly #groups = new Map<RequestScope, Group>()
  readonly #stats = new PoolCounters()
  #ageTimer: NodeJS.Timeout | undefined = undefined
  #pumping = false
  #closed = false
  #destroyed = false
  #closing: Promise<void> | undefined = undefined
  #destroying: Promise<void> | undefined = undefined
  #idle: (() => void) | undefined = undefined

  constructor(options: ResolvedAdmissionOptions) {
    this.#options = options
    this.#guard = options.guard
    this.#queue = new FairQueue<Task>(options.maxPerRequest, options.queueTimeout !== false)
    this.#free = new Group(undefined)
    this.#unregister = options.guard?.register(this)
  }

  /** Slots: tasks that may run at once. */
  get concurrency(): number {
    return this.#options.concurrency
  }

  /** True once `close()` or `destroy()` was called: `run()` rejects with `LG_ERR_POOL_CLOSED`. */
  get closed(): boolean {
    return this.#closed
  }

  /** True once `destroy()` ran (directly or at the end of `close()`). */
  get destroyed(): boolean {
    return this.#destroyed
  }

  stats(): PoolStats {
    return this.#stats.snapshot(this.#queue.queued, this.#queue.running)
  }

  /** Starts `task` on the executor. Must eventually call `settle(task, ...)`. */
  protected abstract start(task: Task): void
  /** A running task's request or signal aborted with `reason`. */
  protected abstract abortRunning(task: Task, reason: unknown): void
  /** Stops the executor (threads). Called once, by `destroy()`. */
  protected abstract shutdownExecutor(): Promise<void>
  /**
   * Whether a queued task must start in its submitter's AsyncLocalStorage context (dispatcher: the work
   * runs here; thread pool: no, it runs on a thread, and the caller's `await` resumes in its own context).
   */
  protected abstract readonly keepsContext: boolean
  /**
   * Whether abortable tasks need a signal of their own while running (thread pool: yes). Such a pool
   * hands work that can never be aborted no signal at all.
   */
  protected abstract readonly ownSignal: boolean
  /** The signal for work that has neither a request nor a caller's signal (pools without `ownSignal`). */
  protected abstract defaultSignal(): AbortSignal | undefined

  /** @internal Admits a task: starts it, queues it, or rejects. */
  protected submit(work: unknown, runOptions: RunOptions | undefined, extra: unknown): Promise<unknown> {
    const stats = this.#stats
    if (this.#closed) {
      stats.closed++
      return Promise.reject(new PoolClosedError())
    }
    let signal: AbortSignal | undefined
    let scope: RequestScope | undefined
    if (runOptions === undefined) {
      scope = storage.getStore()
    } else {
      signal = runOptions.signal
      if (signal !== undefined && !isSignal(signal)) return Promise.reject(invalid('signal', 'an AbortSignal', signal))
      const s = runOptions.scope
      scope = s === undefined ? storage.getStore() : s === null ? undefined : s
    }
    if (scope !== undefined && scope.aborted) {
      stats.droppedAborted++
      return Promise.reject(scope.reason)
    }
    if (signal !== undefined && isAborted(signal)) {
      stats.droppedAborted++
      return Promise.reject(signal.reason)
    }
    const options = this.#options
    const queue = this.#queue
    const group = scope === undefined ? this.#free : this.#groupOf(scope)
    const startNow = queue.running < options.concurrency && group.running < options.maxPerRequest && !queue.ready
    if (!startNow && queue.queued >= options.maxQueue) {
      stats.full++
      if (group !== this.#free && group.queued === 0 && group.running === 0) this.#dropGroup(group)
      return Promise.reject(new PoolFullError(this.retryAfter()))
    }
    const promise = new Promise<unknown>(captureResolvers)
    const task = new Task(this, group, work, extra, signal)
    if (this.#guard?.captureStacks === true) task.trace = captureUserStack(Admission.prototype.submit, Error.stackTraceLimit)
    if (startNow) {
      // It runs at once, in the caller's context: no wait to time, no context to keep.
      queue.start(task)
      this.#begin(task, performance.now())
    } else {
      task.time = performance.now()
      // The task will start from whatever callback frees a slot; keep the submitter's context for it.
      // A plain AsyncResource, not AsyncLocalStorage.snapshot(): on Node 20 snapshot() goes through
      // AsyncResource.bind(), which costs ~10× more (a deprecation getter and closures per call).
      if (this.keepsContext) task.context = new AsyncResource('leak-guard.task')
      if (signal !== undefined) listen(signal, task)
      queue.push(task)
      if (this.#ageTimer === undefined && options.queueTimeout !== false) this.#armAgeTimer(options.queueTimeout)
    }
    return promise
  }

  /**
   * `Retry-After` in seconds: the time the queue needs to drain at the recent mean service time,
   * bounded to 1–60 s.
   */
  retryAfter(): number {
    return this.#stats.retryAfter(this.#queue.queued, this.#options.concurrency)
  }

  #groupOf(scope: RequestScope): Group {
    let group = this.#groups.get(scope)
    if (group === undefined) {
      const g = new Group(scope)
      this.#groups.set(scope, g)
      g.disposeAbort = scope[kSubscribe]((reason) => {
        g.disposeAbort = undefined
        this.#scopeAborted(g, reason)
      })
      group = g
    }
    return group
  }

  #dropGroup(group: Group): void {
    if (group.scope === undefined) return
    this.#groups.delete(group.scope)
    group.disposeAbort?.()
    group.disposeAbort = undefined
    if (group.leakTimer !== undefined) {
      clearTimeout(group.leakTimer)
      group.leakTimer = undefined
    }
  }

  #maybeDropGroup(group: Group): void {
    if (group.scope !== undefined && group.queued === 0 && group.running === 0) this.#dropGroup(group)
  }

  /** The request of `group` aborted (timeout, disconnect, shutdown, or simply ended). */
  #scopeAborted(group: Group, reason: unknown): void {
    while (group.head !== undefined) {
      const task = group.head
      this.#queue.remove(task)
      this.#stats.droppedAborted++
      this.#finish(task)
      task.reject(reason)
    }
    if (group.running > 0) {
      // Aborting runs user code (abort listeners) that may start or settle tasks: collect first.
      for (const task of this.#queue.runningOf(group)) this.#abortTask(task, reason)
    }
    const guard = this.#guard
    if (group.running > 0 && guard !== undefined && !this.#destroyed) {
      const timer = setTimeout(() => {
        group.leakTimer = undefined
        for (const task of this.#queue.runningOf(group)) guard.reportLeak(group.scope!, 'task', task.trace?.stack)
        this.#maybeDropGroup(group)
      }, guard.options.leakGracePeriod)
      timer.unref()
      group.leakTimer = timer
    } else {
      this.#maybeDropGroup(group)
    }
  }

  #abortTask(task: Task, reason: unknown): void {
    if (task.state !== RUNNING || task.abortReason !== undefined) return
    task.abortReason = reason
    this.#stats.aborted++
    this.abortRunning(task, reason)
  }

  /** @internal The caller's signal of `task` aborted. */
  signalAborted(task: Task, reason: unknown): void {
    if (task.state === QUEUED) {
      this.#queue.remove(task)
      this.#stats.droppedAborted++
      this.#finish(task)
      this.#maybeDropGroup(task.group)
      task.reject(reason)
    } else if (task.state === RUNNING) {
      this.#abortTask(task, reason)
    }
  }

  /** Fills free slots from the fair queue; `now` is when this began. */
  #pump(now: number): void {
    if (this.#pumping) return
    this.#pumping = true
    try {
      const queue = this.#queue
      const limit = this.#options.concurrency
      while (queue.running < limit && queue.ready) this.#begin(queue.take()!, now)
    } finally {
      this.#pumping = false
    }
  }

  /** Runs `task`, already counted as running by the queue. */
  #begin(task: Task, now: number): void {
    task.state = RUNNING
    // Only queued tasks have an enqueue time (performance.now() > 0); the others waited 0 ms.
    this.#stats.started(task.time === 0 ? 0 : now - task.time)
    task.time = now
    if (!armSignal(task, this.ownSignal)) task.execSignal = this.defaultSignal()
    this.start(task)
  }

  /** Called by the executor when a running task settled. */
  protected settle(task: Task, ok: boolean, value: unknown): void {
    if (task.state !== RUNNING) return
    const now = performance.now()
    const stats = this.#stats
    stats.settled(now - task.time, ok)
    if (task.abortReason === undefined && task.execSignal !== undefined && isAborted(task.execSignal)) stats.aborted++
    this.#release(task)
    if (ok) task.resolve(value)
    else task.reject(value)
    if (this.#queue.ready) this.#pump(now)
  }

  #release(task: Task): void {
    this.#finish(task)
    this.#queue.finish(task)
    this.#maybeDropGroup(task.group)
    if (this.#idle !== undefined && this.#queue.running === 0 && this.#queue.queued === 0) this.#idle()
  }

  #finish(task: Task): void {
    if (task.listening) unlisten(task)
    task.state = DONE
    task.context = undefined
    task.work = undefined
  }

  #armAgeTimer(ms: number): void {
    const timer = setTimeout(() => this.#expire(), ms)
    timer.unref()
    this.#ageTimer = timer
  }

  /** Rejects the tasks that waited longer than `queueTimeout`; re-arms for the oldest remaining. */
  #expire(): void {
    this.#ageTimer = undefined
    const timeout = this.#options.queueTimeout as number
    const queue = this.#queue
    const now = performance.now()
    // 1 ms of slack: timers may fire a hair early relative to performance.now().
    for (let task = queue.oldest; task !== undefined && now - task.time >= timeout - 1; task = queue.oldest) {
      queue.remove(task)
      this.#stats.queueTimeout++
      this.#finish(task)
      this.#maybeDropGroup(task.group)
      task.reject(new PoolQueueTimeoutError(timeout, this.retryAfter()))
    }
    const oldest = queue.oldest
    if (oldest !== undefined) this.#armAgeTimer(Math.max(1, Math.ceil(oldest.time + timeout - now)))
  }

  /**
   * Stops accepting work (`run()` rejects with `LG_ERR_POOL_CLOSED`), lets queued and running tasks
   * finish for up to `closeTimeout` ms, then destroys the pool. Idempotent: every call returns the
   * same promise.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    this.#closed = true
    this.#unregister?.()
    if (this.#destroying !== undefined) return (this.#closing = this.#destroying)
    this.#closing = new Promise<void>((resolve) => {
      if (this.#queue.running === 0 && this.#queue.queued === 0) return resolve()
      const timer = setTimeout(resolve, this.#options.closeTimeout)
      timer.unref()
      this.#idle = () => {
        clearTimeout(timer)
        resolve()
      }
    }).then(() => {
      this.#idle = undefined
      return this.destroy()
    })
    return this.#closing
  }

  /**
   * Rejects queued tasks with `LG_ERR_POOL_CLOSED`, aborts running ones (their promises reject at once
   * with `LG_ERR_POOL_CLOSED`; threads are terminated) and releases every timer and listener.
   * Idempotent.
   */
  destroy(): Promise<void> {
    if (this.#destroying !== undefined) return this.#destroying
    this.#closed = true
    this.#destroyed = true
    this.#unregister?.()
    const error = new PoolClosedError()
    if (this.#ageTimer !== undefined) {
      clearTimeout(this.#ageTimer)
      this.#ageTimer = undefined
    }
    const stats = this.#stats
    for (const task of this.#queue.removeAll([this.#free, ...this.#groups.values()])) {
      stats.closed++
      this.#finish(task)
      task.reject(error)
    }
    const running = this.#queue.runningOf(undefined)
    for (const task of running) this.#abortTask(task, error)
    for (const task of running) {
      if (task.state !== RUNNING) continue
      stats.completed++
      stats.failed++
      this.#release(task)
      task.reject(error)
    }
    for (const group of [...this.#groups.values()]) this.#dropGroup(group)
    this.#destroying = this.shutdownExecutor().then(noop, noop)
    return this.#destroying
  }
}
