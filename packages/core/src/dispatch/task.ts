import type { AsyncResource } from 'node:async_hooks'
import type { LazyStack } from '../observe/stack.js'
import type { RequestScope } from '../scope/request-scope.js'
import { QueueGroup, type QueueEntry } from './fair-queue.js'

export const QUEUED = 0
export const RUNNING = 1
export const DONE = 2

/** Who a task reports its caller's signal aborting to (the pool). */
export interface TaskOwner {
  signalAborted(task: Task, reason: unknown): void
}

/** Internal (not exported from an entry; kept in the declarations the pools reference): the tasks of one request (or of no request): its queue, plus the pool's binding to the request. */
export class Group extends QueueGroup<Task> {
  readonly scope: RequestScope | undefined
  /** Removes the pool's listener on the request's abort. */
  disposeAbort: (() => void) | undefined = undefined
  /** Reports the group's tasks still running `leakGracePeriod` after its request ended. */
  leakTimer: NodeJS.Timeout | undefined = undefined

  constructor(scope: RequestScope | undefined) {
    super()
    this.scope = scope
  }
}

/** Internal (not exported from an entry; kept in the declarations the pools reference): one submitted task. A class so every task has the same shape. */
export class Task implements QueueEntry<Task> {
  state = QUEUED
  readonly group: Group
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
  prev: Task | undefined = undefined
  next: Task | undefined = undefined
  agePrev: Task | undefined = undefined
  ageNext: Task | undefined = undefined
  readonly owner: TaskOwner

  /** Call only as `new Task(...)` right after `new Promise(captureResolvers)`: it takes that promise's resolvers. */
  constructor(owner: TaskOwner, group: Group, work: unknown, options: unknown, signal: AbortSignal | undefined) {
    this.owner = owner
    this.group = group
    this.work = work
    this.options = options
    this.signal = signal
    this.execSignal = undefined
    this.controller = undefined
    this.resolve = pendingResolve!
    this.reject = pendingReject!
    pendingResolve = pendingReject = undefined
  }

  /** Listener for the caller's signal (`addEventListener('abort', task)`: no closure per task). */
  handleEvent(): void {
    this.owner.signalAborted(this, this.signal!.reason)
  }
}

// The resolving functions of the promise being created, handed from `captureResolvers` to the Task
// constructor: no executor closure (and context) per task.
let pendingResolve: ((value: unknown) => void) | undefined
let pendingReject: ((error: unknown) => void) | undefined

/** The executor of a task's promise: `new Promise(captureResolvers)`, then `new Task(...)`. */
export function captureResolvers(resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
  pendingResolve = resolve
  pendingReject = reject
}

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

/** Whether `value` can serve as a task's signal: Node's AbortSignal or anything with `addEventListener`. */
export function isSignal(value: unknown): value is AbortSignal {
  return value instanceof AbortSignal || (value !== null && typeof value === 'object' && typeof (value as SignalLike).addEventListener === 'function')
}

export function isAborted(signal: AbortSignal): boolean {
  return signal instanceof AbortSignal ? abortedOf.call(signal) : (signal as SignalLike).aborted
}

/** Makes `task` listen for its caller's signal aborting. */
export function listen(signal: AbortSignal, task: Task): void {
  task.listening = true
  if (signal instanceof AbortSignal) addListener.call(signal, 'abort', task)
  else (signal as SignalLike).addEventListener('abort', task)
}

export function unlisten(task: Task): void {
  task.listening = false
  const signal = task.signal!
  if (signal instanceof AbortSignal) removeListener.call(signal, 'abort', task)
  else (signal as SignalLike).removeEventListener('abort', task)
}

/**
 * Chooses the signal a starting task's work sees (`execSignal`): one source is handed over as is; two
 * (request + caller) need a controller of their own. With `ownSignal` (thread pool) a task that can be
 * aborted always has one (aborting it kills the thread). Returns false when nothing can abort the task
 * (no request, no caller's signal): the pool then hands its default, if any — none for a thread task,
 * which spares piscina's abort path.
 */
export function armSignal(task: Task, ownSignal: boolean): boolean {
  const scope = task.group.scope
  if (ownSignal ? scope !== undefined || task.signal !== undefined : scope !== undefined && task.signal !== undefined) {
    const controller = new AbortController()
    task.controller = controller
    task.execSignal = controller.signal
    // The caller's signal must reach the controller while the task runs (the request's comes via its group).
    if (task.signal !== undefined && !task.listening) listen(task.signal, task)
  } else if (scope !== undefined) {
    task.execSignal = scope.signal
  } else if (task.signal !== undefined) {
    // The work holds the caller's signal itself; nothing to listen for while it runs.
    if (task.listening) unlisten(task)
    task.execSignal = task.signal
  } else {
    return false
  }
  return true
}
