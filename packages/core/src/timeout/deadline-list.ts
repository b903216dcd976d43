import { AsyncResource } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'

import { kDeadline, kList, kNext, kPrev } from '../symbols.js'

// Links kept on the entry itself, so joining the list allocates nothing (keys defined in symbols.ts).
export { kDeadline, kList, kNext, kPrev }

/** What an entry of a `DeadlineList` carries; the list owns these fields. */
export interface DeadlineEntry {
  /** `performance.now()` time at which the entry expires, while in a list. */
  [kDeadline]: number
  [kList]: DeadlineList<never> | undefined
  [kPrev]: this | undefined
  [kNext]: this | undefined
}

/**
 * Entries that all expire `ms` after they started, in start order — so in deadline order — under one
 * timer aimed at the first deadline: an entry joins and leaves in O(1) instead of arming and clearing a
 * `Timeout` of its own, which shows on a hello-world server. Used for the request scopes on a guard's
 * default timeout and for the calls on an HTTP client's default timeout.
 *
 * The timer runs in the async context the list was created in (the app's start-up, not a request's), so
 * it holds on to no request and its callback answers every request in a neutral context. It is not
 * cleared when the list empties, which a server at low concurrency does after nearly every request
 * (clearing and re-arming a `Timeout` per request is the cost this list exists to avoid): it fires at
 * the deadline it was aimed at, finds the list empty and is not re-armed. So an idle list holds no
 * timer from at most `ms` after its last entry left, and `release()` clears it at once.
 */
export class DeadlineList<T extends DeadlineEntry> {
  readonly ms: number
  readonly #onExpire: (entry: T) => void
  readonly #context = new AsyncResource('leak-guard.deadlines')
  readonly #fire = (): void => this.#expire()
  #head: T | undefined = undefined
  #tail: T | undefined = undefined
  #timer: NodeJS.Timeout | undefined = undefined

  constructor(ms: number, onExpire: (entry: T) => void) {
    this.ms = ms
    this.#onExpire = onExpire
  }

  /** Adds `entry`, expiring `ms` after `start` (a `performance.now()` time no earlier than the last entry's). */
  add(entry: T, start: number = performance.now()): void {
    const tail = this.#tail
    entry[kDeadline] = start + this.ms
    entry[kList] = this as unknown as DeadlineList<never>
    entry[kPrev] = tail
    entry[kNext] = undefined
    if (tail === undefined) this.#head = entry
    else tail[kNext] = entry
    this.#tail = entry
    if (this.#timer === undefined) this.#arm(entry)
  }

  /** Takes `entry` out; a no-op when it is not in this list. */
  remove(entry: T): void {
    if (entry[kList] !== (this as unknown as DeadlineList<never>)) return
    const prev = entry[kPrev]
    const next = entry[kNext]
    if (prev === undefined) this.#head = next
    else prev[kNext] = next
    if (next === undefined) this.#tail = prev
    else next[kPrev] = prev
    entry[kList] = entry[kPrev] = entry[kNext] = undefined
    // The timer stays aimed at a deadline that may have left: it fires, finds the new head not due yet
    // (or none) and aims again (or stops).
  }

  /** Clears the timer if the list is empty (the owner shuts down); entries still in it keep it. */
  release(): void {
    if (this.#head === undefined && this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
  }

  #expire(): void {
    this.#timer = undefined
    const now = performance.now()
    try {
      let head = this.#head
      while (head !== undefined && head[kDeadline] <= now) {
        this.remove(head)
        this.#onExpire(head)
        head = this.#head
      }
    } finally {
      // Even if an expiry threw (a framework's error handler), the entries behind it keep their deadlines.
      const head = this.#head
      if (head !== undefined && this.#timer === undefined) this.#arm(head)
    }
  }

  #arm(head: T): void {
    const left = head[kDeadline] - performance.now()
    // Node may run a timer a fraction of a millisecond before performance.now() reaches its time: the
    // expiry then finds the head not yet due and aims again, 1 ms later.
    const timer: NodeJS.Timeout = this.#context.runInAsyncScope(setTimeout, undefined, this.#fire, left > 1 ? Math.ceil(left) : 1)
    timer.unref()
    this.#timer = timer
  }
}
