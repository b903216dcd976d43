import { AsyncResource } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import { PoolClosedError, PoolFullError, PoolQueueTimeoutError } from '../errors.js'
import { integer, integerOrFalse, invalid } from '../options.js'
import { storage } from '../scope/context.js'
import type { RequestScope } from '../scope/request-scope.js'
import { kSubscribe } from '../symbols.js'
import { isGuard } from '../brand.js'
import { captureUserStack, type LazyStack } from '../observe/stack.js'
import type { Guard } from '../scope/guard.js'

/**
 * The admission layer shared by the async dispatcher and the thread pool. leak-guard counts queued and
 * running tasks itself, so the executors below only ever see work that has a free slot:
 *
 * - a full queue rejects at once with `PoolFullError` (503 + `Retry-After`);
 * - a task that waits longer than `queueTimeout` rejects with `PoolQueueTimeoutError`;
 * - tasks are grouped by the request that submitted them; free slots go round-robin to the groups, and a
 *   group with `maxPerRequest` tasks running is skipped, so one request cannot take the whole pool;
 * - a task whose request ended (or whose own signal aborted) while queued is dropped without running; a
 *   running one is aborted, and if it is still running `leakGracePeriod` later it is reported as a leak;
 * - `close()` lets accepted work finish up to `closeTimeout`, then `destroy()`s; both are idempotent.
 */

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

export interface PoolStats {
  /** Tasks waiting for a slot. */
  queued: number
  /** Tasks running now. */
  running: number
  /** Tasks that ran and settled (fulfilled or rejected). */
  completed: number
  /** Of `completed`, those that rejected (including aborted and crashed ones). */
  failed: number
  /** Tasks that never ran, by reason. `aborted`: their request ended or their signal aborted while queued. */
  rejected: { full: number; queueTimeout: number; closed: number; aborted: number }
  /** Running tasks whose signal aborted (request ended, own signal, destroy). */
  aborted: number
  /** Mean time tasks waited in the queue before running, in milliseconds. */
  meanWaitMs: number
  /** Mean run time of completed tasks, in milliseconds. */
  meanRunMs: number
}

export interface ResolvedAdmissionOptions {
  concurrency: number
  maxQueue: number
  queueTimeout: number | false
  maxPerRequest: number
  closeTimeout: number
  guard: Guard | undefined
}

export const admissionKeys = ['maxQueue', 'queueTimeout', 'maxPerRequest', 'closeTimeout', 'guard'] as const

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
    queueTimeout: integerOrFalse('queueTimeout', o.queueTimeout, false),
    maxPerRequest: maxPerRequest === false ? Infinity : maxPerRequest,
    closeTimeout: integer('closeTimeout', o.closeTimeout, 10_000),
    guard: guard as Guard | undefined,
  }
}

const QUEUED = 0
const RUNNING = 1
const DONE = 2

/** Retry-After bounds, in seconds: never tell a client "now", never more than a minute. */
const RETRY_MIN = 1
const RETRY_MAX = 60
/** Weight of the newest run time in the moving average that `Retry-After` uses. */
const EWMA = 0.1

/** @internal One submitted task. A class so every task has the same shape. */
export class Task {
  state = QUEUED
  group: Group
  work: unknown
  options: unknown
  /** The caller's own signal, if any. */
  signal: AbortSignal | undefined
  /** What the executor hands to the work: caller's signal, request's signal, or a combination. */
  execSignal: AbortSignal | undefined
  /** A per-task controller, when the task needs one (thread tasks; caller signal + request). */
  controller: AbortController | undefined
  abortReason: unknown = undefined
  /** Whether `this` is registered as an 'abort' listener on `signal`. */
  listening = false
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
  /** `performance.now()` when it was queued (queued tasks only), then when it started. */
  time = 0
  /** The submitter's AsyncLocalStorage context (only for queued tasks of executors that run JS here). */
  context: AsyncResource | undefined = undefined
  /** Where the task was submitted, when the guard captures stacks; formatted only if reported. */
  trace: LazyStack | undefined = undefined
  /** Links in its group's queue while queued, in the pool's list of running tasks while running. */
  prev: Task | undefined = undefined
  next: Task | undefined = undefined
  agePrev: Task | undefined = undefined
  ageNext: Task | undefined = undefined
  pool: Admission

  constructor(pool: Admission, group: Group, work: unknown, options: unknown, signal: AbortSignal | undefined) {
    this.pool = pool
    this.group = group
    this.work = work
    this.options = options
    this.signal = signal
    this.execSignal = undefined
    this.controller = undefined
    this.resolve = pendingResolve!
    this.reject = pendingReject!
  }

  /** Listener for the caller's signal (`addEventListener('abort', task)`: no closure per task). */
  handleEvent(): void {
    this.pool.signalAborted(this, this.signal!.reason)
  }
}

// The resolving functions of the promise being created, handed from `captureResolvers` to the Task
// constructor: no executor closure (and context) per task.
let pendingResolve: ((value: unknown) => void) | undefined
let pendingReject: ((error: unknown) => void) | undefined
function captureResolvers(resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
  pendingResolve = resolve
  pendingReject = reject
}

/** @internal The tasks of one request (or of no request), for fairness and for aborts. */
export class Group {
  readonly scope: RequestScope | undefined
  head: Task | undefined = undefined
  tail: Task | undefined = undefined
  queued = 0
  running = 0
  ringPrev: Group | undefined = undefined
  ringNext: Group | undefined = undefined
  inRing = false
  disposeAbort: (() => void) | undefined = undefined
  leakTimer: NodeJS.Timeout | undefined = undefined

  constructor(scope: RequestScope | undefined) {
    this.scope = scope
  }
}

function noop(): void {}

// Node's own AbortSignal methods, called directly: a signal's hidden class is unique to it on Node 20
// (its prototype is set after creation), so looking `addEventListener` or `aborted` up on each new
// signal misses V8's inline caches every time (~1 µs per task). Other signal implementations (e.g.
// from another realm or a polyfill) go through their own properties.
const addListener = EventTarget.prototype.addEventListener
const removeListener = EventTarget.prototype.removeEventListener
const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')!.get as (this: AbortSignal) => boolean

/** What a signal from elsewhere must offer (TypeScript narrows `AbortSignal` to `never` past `instanceof`). */
interface SignalLike {
  readonly aborted: boolean
  addEventListener(type: 'abort', listener: { handleEvent(): void }): void
  removeEventListener(type: 'abort', listener: { handleEvent(): void }): void
}

function isAborted(signal: AbortSignal): boolean {
  return signal instanceof AbortSignal ? abortedOf.call(signal) : (signal as SignalLike).aborted
}

function listen(signal: AbortSignal, task: Task): void {
  task.listening = true
  if (signal instanceof AbortSignal) addListener.call(signal, 'abort', task)
  else (signal as SignalLike).addEventListener('abort', task)
}

/**
 * Base of `Dispatcher` and `ThreadPool`: admission, queue, fairness, request binding, stats and the
 * close/destroy lifecycle. Subclasses start and abort tasks.
 */
export abstract class Admission {
  readonly #options: ResolvedAdmissionOptions
  readonly #guard: Guard | undefined
  readonly #unregister: (() => void) | undefined
  /** Tasks without a request. Always exists: most work outside requests goes through it. */
  readonly #free: Group
  readonly #groups = new Map<RequestScope, Group>()
  /** Ring of groups that have queued tasks and may run one now; `#cursor` is the next to serve. */
  #cursor: Group | undefined = undefined
  #queued = 0
  #running = 0
  /** Running tasks, linked through `prev`/`next` (free once a task left its queue). */
  #runHead: Task | undefined = undefined
  #runTail: Task | undefined = undefined
  #ageHead: Task | undefined = undefined
  #ageTail: Task | undefined = undefined
  #ageTimer: NodeJS.Timeout | undefined = undefined
  #pumping = false
  #closed = false
  #destroyed = false
  #closing: Promise<void> | undefined = undefined
  #destroying: Promise<void> | undefined = undefined
  #idle: (() => void) | undefined = undefined
  #meanRecent = 0
  readonly #stats = {
    completed: 0,
    failed: 0,
    aborted: 0,
    full: 0,
    queueTimeout: 0,
    closed: 0,
    droppedAborted: 0,
    waitTotal: 0,
    waitCount: 0,
    runTotal: 0,
  }

  constructor(options: ResolvedAdmissionOptions) {
    this.#options = options
    this.#guard = options.guard
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
    const s = this.#stats
    return {
      queued: this.#queued,
      running: this.#running,
      completed: s.completed,
      failed: s.failed,
      rejected: { full: s.full, queueTimeout: s.queueTimeout, closed: s.closed, aborted: s.droppedAborted },
      aborted: s.aborted,
      meanWaitMs: s.waitCount === 0 ? 0 : s.waitTotal / s.waitCount,
      meanRunMs: s.completed === 0 ? 0 : s.runTotal / s.completed,
    }
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
  /** Whether abortable tasks need a signal of their own while running (thread pool: yes). */
  protected abstract readonly ownSignal: boolean
  /** The signal for work that has neither a request nor a caller's signal. */
  protected abstract defaultSignal(): AbortSignal

  /** @internal Admits a task: starts it, queues it, or rejects. */
  protected submit(work: unknown, runOptions: RunOptions | undefined, extra: unknown): Promise<unknown> {
    if (this.#closed) {
      this.#stats.closed++
      return Promise.reject(new PoolClosedError())
    }
    let signal: AbortSignal | undefined
    let scope: RequestScope | undefined
    if (runOptions === undefined) {
      scope = storage.getStore()
    } else {
      signal = runOptions.signal
      if (signal !== undefined && !(signal instanceof AbortSignal) && (signal === null || typeof signal !== 'object' || typeof (signal as SignalLike).addEventListener !== 'function')) {
        return Promise.reject(invalid('signal', 'an AbortSignal', signal))
      }
      const s = runOptions.scope
      scope = s === undefined ? storage.getStore() : s === null ? undefined : s
    }
    if (scope !== undefined && scope.aborted) {
      this.#stats.droppedAborted++
      return Promise.reject(scope.reason)
    }
    if (signal !== undefined && isAborted(signal)) {
      this.#stats.droppedAborted++
      return Promise.reject(signal.reason)
    }
    const options = this.#options
    let group = this.#free
    if (scope !== undefined) group = this.#groupOf(scope)
    const startNow = this.#running < options.concurrency && group.running < options.maxPerRequest && this.#cursor === undefined
    if (!startNow && this.#queued >= options.maxQueue) {
      this.#stats.full++
      if (group !== this.#free && group.queued === 0 && group.running === 0) this.#dropGroup(group)
      return Promise.reject(new PoolFullError(this.retryAfter()))
    }
    const promise = new Promise<unknown>(captureResolvers)
    const task = new Task(this, group, work, extra, signal)
    pendingResolve = pendingReject = undefined
    if (this.#guard?.captureStacks === true) task.trace = captureUserStack(Admission.prototype.submit, Error.stackTraceLimit)
    if (startNow) {
      // It runs at once, in the caller's context: no wait to time, no context to keep.
      this.#begin(task, performance.now())
    } else {
      task.time = performance.now()
      // The task will start from whatever callback frees a slot; keep the submitter's context for it.
      // A plain AsyncResource, not AsyncLocalStorage.snapshot(): on Node 20 snapshot() goes through
      // AsyncResource.bind(), which costs ~10× more (a deprecation getter and closures per call).
      if (this.keepsContext) task.context = new AsyncResource('leak-guard.task')
      if (signal !== undefined) listen(signal, task)
      this.#enqueue(task)
    }
    return promise
  }

  /**
   * `Retry-After` in seconds: the time the queue needs to drain at the recent mean service time,
   * bounded to 1–60 s.
   */
  retryAfter(): number {
    const seconds = Math.ceil(((this.#queued + 1) * this.#meanRecent) / this.#options.concurrency / 1000)
    return seconds < RETRY_MIN ? RETRY_MIN : seconds > RETRY_MAX ? RETRY_MAX : seconds
  }

  #groupOf(scope: RequestScope): Group {
    let group = this.#groups.get(scope)
    if (group === undefined) {
      group = new Group(scope)
      this.#groups.set(scope, group)
      const g = group
      group.disposeAbort = scope[kSubscribe]((reason) => {
        g.disposeAbort = undefined
        this.#scopeAborted(g, reason)
      })
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
      this.#unqueue(task)
      this.#stats.droppedAborted++
      this.#finish(task)
      task.reject(reason)
    }
    if (group.running > 0) {
      // Aborting runs user code (abort listeners) that may start or settle tasks: collect first.
      for (const task of this.#runningOf(group)) this.#abortTask(task, reason)
    }
    const guard = this.#guard
    if (group.running > 0 && guard !== undefined && !this.#destroyed) {
      const timer = setTimeout(() => {
        group.leakTimer = undefined
        for (const task of this.#runningOf(group)) guard.reportLeak(group.scope!, 'task', task.trace?.stack)
        this.#maybeDropGroup(group)
      }, guard.options.leakGracePeriod)
      timer.unref()
      group.leakTimer = timer
    } else {
      this.#maybeDropGroup(group)
    }
  }

  /** The running tasks of `group` (all of them for `undefined`), oldest first. */
  #runningOf(group: Group | undefined): Task[] {
    const tasks: Task[] = []
    for (let task = this.#runHead; task !== undefined; task = task.next) {
      if (group === undefined || task.group === group) tasks.push(task)
    }
    return tasks
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
      this.#unqueue(task)
      this.#stats.droppedAborted++
      this.#finish(task)
      this.#maybeDropGroup(task.group)
      task.reject(reason)
    } else if (task.state === RUNNING) {
      this.#abortTask(task, reason)
    }
  }

  #enqueue(task: Task): void {
    const group = task.group
    task.prev = group.tail
    if (group.tail === undefined) group.head = task
    else group.tail.next = task
    group.tail = task
    group.queued++
    this.#queued++
    if (!group.inRing && group.running < this.#options.maxPerRequest) this.#ringAdd(group)
    if (this.#options.queueTimeout !== false) {
      task.agePrev = this.#ageTail
      if (this.#ageTail === undefined) this.#ageHead = task
      else this.#ageTail.ageNext = task
      this.#ageTail = task
      if (this.#ageTimer === undefined) this.#armAgeTimer(this.#options.queueTimeout)
    }
  }

  /** Takes a queued task out of its group's list (and the age list). */
  #unqueue(task: Task): void {
    const group = task.group
    if (task.prev === undefined) group.head = task.next
    else task.prev.next = task.next
    if (task.next === undefined) group.tail = task.prev
    else task.next.prev = task.prev
    task.prev = task.next = undefined
    group.queued--
    this.#queued--
    if (group.queued === 0 && group.inRing) this.#ringRemove(group)
    if (this.#options.queueTimeout !== false) {
      if (task.agePrev === undefined) this.#ageHead = task.ageNext
      else task.agePrev.ageNext = task.ageNext
      if (task.ageNext === undefined) this.#ageTail = task.agePrev
      else task.ageNext.agePrev = task.agePrev
      task.agePrev = task.ageNext = undefined
    }
  }

  #unlisten(task: Task): void {
    task.listening = false
    const signal = task.signal!
    if (signal instanceof AbortSignal) removeListener.call(signal, 'abort', task)
    else (signal as SignalLike).removeEventListener('abort', task)
  }

  /** Adds `group` just before the cursor, i.e. last in the round. */
  #ringAdd(group: Group): void {
    group.inRing = true
    const cursor = this.#cursor
    if (cursor === undefined) {
      group.ringPrev = group.ringNext = group
      this.#cursor = group
      return
    }
    const last = cursor.ringPrev!
    group.ringPrev = last
    group.ringNext = cursor
    last.ringNext = group
    cursor.ringPrev = group
  }

  #ringRemove(group: Group): void {
    group.inRing = false
    const next = group.ringNext!
    if (next === group) {
      this.#cursor = undefined
    } else {
      group.ringPrev!.ringNext = next
      next.ringPrev = group.ringPrev
      if (this.#cursor === group) this.#cursor = next
    }
    group.ringPrev = group.ringNext = undefined
  }

  /** Fills free slots from the ring, one task per group per turn; `now` is when this began. */
  #pump(now: number): void {
    if (this.#pumping) return
    this.#pumping = true
    try {
      const limit = this.#options.concurrency
      const perRequest = this.#options.maxPerRequest
      while (this.#running < limit && this.#cursor !== undefined) {
        const group = this.#cursor
        const task = group.head!
        this.#unqueue(task)
        // Next turn goes to the next group, even if this one still has queued tasks.
        if (group.inRing) {
          this.#cursor = group.ringNext
          if (group.running + 1 >= perRequest) this.#ringRemove(group)
        }
        this.#begin(task, now)
      }
    } finally {
      this.#pumping = false
    }
  }

  #begin(task: Task, now: number): void {
    const group = task.group
    task.state = RUNNING
    this.#running++
    group.running++
    const tail = this.#runTail
    task.prev = tail
    if (tail === undefined) this.#runHead = task
    else tail.next = task
    this.#runTail = task
    // Only queued tasks have an enqueue time (performance.now() > 0); the others waited 0 ms.
    if (task.time !== 0) this.#stats.waitTotal += now - task.time
    task.time = now
    this.#stats.waitCount++
    // Which signal the work sees: one source is handed over as is; two (request + caller) need a
    // controller of their own. A thread task that can be aborted always has one (aborting it kills the
    // thread); one that cannot (no request, no signal) has none, which spares piscina's abort path.
    const scope = group.scope
    if (this.ownSignal) {
      if (scope !== undefined || task.signal !== undefined) this.#control(task)
    } else if (scope !== undefined && task.signal !== undefined) {
      this.#control(task)
    } else if (scope !== undefined) {
      task.execSignal = scope.signal
    } else if (task.signal !== undefined) {
      // The work holds the caller's signal itself; nothing to listen for while it runs.
      if (task.listening) this.#unlisten(task)
      task.execSignal = task.signal
    } else {
      task.execSignal = this.defaultSignal()
    }
    this.start(task)
  }

  /** Gives `task` a controller of its own, fed by the caller's signal (the request's comes via its group). */
  #control(task: Task): void {
    const controller = new AbortController()
    task.controller = controller
    task.execSignal = controller.signal
    // The caller's signal must reach the controller while the task runs.
    if (task.signal !== undefined && !task.listening) listen(task.signal, task)
  }

  /** Called by the executor when a running task settled. */
  protected settle(task: Task, ok: boolean, value: unknown): void {
    if (task.state !== RUNNING) return
    const now = performance.now()
    const runTime = now - task.time
    const s = this.#stats
    s.completed++
    s.runTotal += runTime
    this.#meanRecent = this.#meanRecent === 0 ? runTime : this.#meanRecent + EWMA * (runTime - this.#meanRecent)
    if (!ok) s.failed++
    if (task.abortReason === undefined && task.execSignal !== undefined && isAborted(task.execSignal)) s.aborted++
    this.#release(task)
    if (ok) task.resolve(value)
    else task.reject(value)
    if (this.#cursor !== undefined) this.#pump(now)
  }

  #release(task: Task): void {
    const group = task.group
    this.#finish(task)
    this.#running--
    group.running--
    const { prev, next } = task
    if (prev === undefined) this.#runHead = next
    else prev.next = next
    if (next === undefined) this.#runTail = prev
    else next.prev = prev
    task.prev = task.next = undefined
    if (group.queued > 0 && !group.inRing && group.running < this.#options.maxPerRequest) this.#ringAdd(group)
    this.#maybeDropGroup(group)
    if (this.#idle !== undefined && this.#running === 0 && this.#queued === 0) this.#idle()
  }

  #finish(task: Task): void {
    if (task.listening) this.#unlisten(task)
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
    const now = performance.now()
    // 1 ms of slack: timers may fire a hair early relative to performance.now().
    while (this.#ageHead !== undefined && now - this.#ageHead.time >= timeout - 1) {
      const task = this.#ageHead
      this.#unqueue(task)
      this.#stats.queueTimeout++
      this.#finish(task)
      this.#maybeDropGroup(task.group)
      task.reject(new PoolQueueTimeoutError(timeout, this.retryAfter()))
    }
    if (this.#ageHead !== undefined) this.#armAgeTimer(Math.max(1, Math.ceil(this.#ageHead.time + timeout - now)))
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
      if (this.#running === 0 && this.#queued === 0) return resolve()
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
    const queued: Task[] = []
    while (this.#cursor !== undefined) {
      const group = this.#cursor
      while (group.head !== undefined) {
        const task = group.head
        this.#unqueue(task)
        queued.push(task)
      }
    }
    // Capped groups are not in the ring but may still hold queued tasks.
    for (const group of [this.#free, ...this.#groups.values()]) {
      while (group.head !== undefined) {
        const task = group.head
        this.#unqueue(task)
        queued.push(task)
      }
    }
    for (const task of queued) {
      this.#stats.closed++
      this.#finish(task)
      task.reject(error)
    }
    const running = this.#runningOf(undefined)
    for (const task of running) this.#abortTask(task, error)
    for (const task of running) {
      if (task.state !== RUNNING) continue
      this.#stats.completed++
      this.#stats.failed++
      this.#release(task)
      task.reject(error)
    }
    for (const group of [...this.#groups.values()]) this.#dropGroup(group)
    this.#destroying = this.shutdownExecutor().then(noop, noop)
    return this.#destroying
  }
}
