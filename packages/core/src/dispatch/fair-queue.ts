/**
 * The waiting and running tasks of a pool, as plain data: no timers, no signals, no promises. The pool
 * (`admission.ts`) decides when a slot is free; this file decides which task gets it.
 *
 * - Entries are grouped (one group per request, plus one for work outside requests). Groups with a
 *   queued entry they may start form a ring; `take()` serves the ring round-robin, one entry per group
 *   per turn, each group's entries first-in first-out.
 * - A group with `maxPerGroup` entries running leaves the ring until one of them finishes.
 * - With `byAge`, every queued entry is also in one list in push order, so the oldest is found in O(1)
 *   (the pool's queue timeout).
 * - Every list is intrusive (the links live on the entries and groups): push, remove from any position,
 *   take and finish are O(1) and allocate nothing.
 *
 * The links are written out here, as in the guard's registry and `timeout/deadline-list.ts`, rather than
 * shared through one generic intrusive-list class: such a class must take its link keys as parameters
 * (an entry sits in two lists at once), and those keyed accesses cost 70–90 ns more per request for the
 * registry and the deadline list alone (`bench/lists/run.mjs`, figures in bench/README.md).
 */

/** The fields a queued or running entry carries for the queue; the queue owns them. */
export interface QueueEntry<T> {
  /** The group it belongs to; set by its owner before `push()` or `start()`, never changed. */
  readonly group: QueueGroup<T>
  /** Neighbours in its group's queue while queued, in the running list while running. */
  prev: T | undefined
  next: T | undefined
  /** Neighbours in push order while queued (only with `byAge`). */
  agePrev: T | undefined
  ageNext: T | undefined
}

/** One group's queue and counts (subclass it for what the owner keeps per group). */
export class QueueGroup<T> {
  head: T | undefined = undefined
  tail: T | undefined = undefined
  /** Entries of this group waiting. */
  queued = 0
  /** Entries of this group running. */
  running = 0
  ringPrev: QueueGroup<T> | undefined = undefined
  ringNext: QueueGroup<T> | undefined = undefined
  inRing = false
}

export class FairQueue<T extends QueueEntry<T>> {
  readonly #maxPerGroup: number
  readonly #byAge: boolean
  /** Ring of groups that have queued entries and may start one now; the cursor is the next to serve. */
  #cursor: QueueGroup<T> | undefined = undefined
  #queued = 0
  #running = 0
  #runHead: T | undefined = undefined
  #runTail: T | undefined = undefined
  #ageHead: T | undefined = undefined
  #ageTail: T | undefined = undefined

  /**
   * @param maxPerGroup most entries of one group running at once (`Infinity`: no cap)
   * @param byAge keep queued entries in push order too, for `oldest`
   */
  constructor(maxPerGroup = Infinity, byAge = false) {
    this.#maxPerGroup = maxPerGroup
    this.#byAge = byAge
  }

  /** Entries waiting. */
  get queued(): number {
    return this.#queued
  }

  /** Entries running. */
  get running(): number {
    return this.#running
  }

  /** True when some group has a queued entry it may start now, i.e. `take()` returns one. */
  get ready(): boolean {
    return this.#cursor !== undefined
  }

  /** The entry queued longest (only with `byAge`). */
  get oldest(): T | undefined {
    return this.#ageHead
  }

  /** Queues `entry` last in its group; a group that may run more joins the ring as the last of the round. */
  push(entry: T): void {
    const group = entry.group
    entry.prev = group.tail
    entry.next = undefined
    if (group.tail === undefined) group.head = entry
    else group.tail.next = entry
    group.tail = entry
    group.queued++
    this.#queued++
    if (!group.inRing && group.running < this.#maxPerGroup) this.#ringAdd(group)
    if (this.#byAge) {
      entry.agePrev = this.#ageTail
      entry.ageNext = undefined
      if (this.#ageTail === undefined) this.#ageHead = entry
      else this.#ageTail.ageNext = entry
      this.#ageTail = entry
    }
  }

  /** Takes a queued `entry` out, wherever it is in its group and in the age order. */
  remove(entry: T): void {
    const group = entry.group
    if (entry.prev === undefined) group.head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === undefined) group.tail = entry.prev
    else entry.next.prev = entry.prev
    entry.prev = entry.next = undefined
    group.queued--
    this.#queued--
    if (group.queued === 0 && group.inRing) this.#ringRemove(group)
    if (this.#byAge) {
      if (entry.agePrev === undefined) this.#ageHead = entry.ageNext
      else entry.agePrev.ageNext = entry.ageNext
      if (entry.ageNext === undefined) this.#ageTail = entry.agePrev
      else entry.ageNext.agePrev = entry.agePrev
      entry.agePrev = entry.ageNext = undefined
    }
  }

  /**
   * Dequeues the next entry in round-robin order and counts it as running; `undefined` when no group
   * may start one. The turn then passes to the next group, even if this one has more queued.
   */
  take(): T | undefined {
    const group = this.#cursor
    if (group === undefined) return undefined
    const entry = group.head!
    this.remove(entry)
    if (group.inRing) this.#cursor = group.ringNext
    this.start(entry)
    return entry
  }

  /** Counts `entry` (taken, or never queued) as running: last in the running list. */
  start(entry: T): void {
    const group = entry.group
    this.#running++
    group.running++
    if (group.inRing && group.running >= this.#maxPerGroup) this.#ringRemove(group)
    const tail = this.#runTail
    entry.prev = tail
    entry.next = undefined
    if (tail === undefined) this.#runHead = entry
    else tail.next = entry
    this.#runTail = entry
  }

  /** A running `entry` is done; its group, if it has queued entries and is under its cap, rejoins the ring. */
  finish(entry: T): void {
    const group = entry.group
    this.#running--
    group.running--
    const { prev, next } = entry
    if (prev === undefined) this.#runHead = next
    else prev.next = next
    if (next === undefined) this.#runTail = prev
    else next.prev = prev
    entry.prev = entry.next = undefined
    if (group.queued > 0 && !group.inRing && group.running < this.#maxPerGroup) this.#ringAdd(group)
  }

  /** The running entries of `group` (all of them for `undefined`), oldest first: a copy, safe to act on. */
  runningOf(group: QueueGroup<T> | undefined): T[] {
    const entries: T[] = []
    for (let entry = this.#runHead; entry !== undefined; entry = entry.next) {
      if (group === undefined || entry.group === group) entries.push(entry)
    }
    return entries
  }

  /**
   * Removes every queued entry and returns them: the ring's groups first, in turn order, then the other
   * `groups` (a group at its cap is out of the ring but may still hold queued entries).
   */
  removeAll(groups: Iterable<QueueGroup<T>>): T[] {
    const removed: T[] = []
    while (this.#cursor !== undefined) this.#removeGroup(this.#cursor, removed)
    for (const group of groups) this.#removeGroup(group, removed)
    return removed
  }

  #removeGroup(group: QueueGroup<T>, removed: T[]): void {
    while (group.head !== undefined) {
      const entry = group.head
      this.remove(entry)
      removed.push(entry)
    }
  }

  /** Adds `group` just before the cursor, i.e. last in the round. */
  #ringAdd(group: QueueGroup<T>): void {
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

  #ringRemove(group: QueueGroup<T>): void {
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
}
