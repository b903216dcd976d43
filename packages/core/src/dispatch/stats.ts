/** What `pool.stats()` returns. */
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

/** Retry-After bounds, in seconds: never tell a client "now", never more than a minute. */
const RETRY_MIN = 1
const RETRY_MAX = 60
/** Weight of the newest run time in the moving average that `Retry-After` uses. */
const EWMA = 0.1

/**
 * A pool's counters and the recent mean service time behind `Retry-After`. Plain fields the pool bumps
 * directly (one increment per event, no call): the figures are read only by `stats()`.
 */
export class PoolCounters {
  completed = 0
  failed = 0
  aborted = 0
  full = 0
  queueTimeout = 0
  closed = 0
  droppedAborted = 0
  waitTotal = 0
  waitCount = 0
  runTotal = 0
  /** Exponentially weighted mean run time, in milliseconds; 0 until the first task settled. */
  meanRecent = 0

  /** A task that waited `waited` ms (0 when it started at once) starts. */
  started(waited: number): void {
    this.waitTotal += waited
    this.waitCount++
  }

  /** A running task settled after `runTime` ms. */
  settled(runTime: number, ok: boolean): void {
    this.completed++
    this.runTotal += runTime
    this.meanRecent = this.meanRecent === 0 ? runTime : this.meanRecent + EWMA * (runTime - this.meanRecent)
    if (!ok) this.failed++
  }

  /**
   * `Retry-After` in seconds: the time `queued` tasks need to drain through `concurrency` slots at the
   * recent mean service time, bounded to 1–60 s.
   */
  retryAfter(queued: number, concurrency: number): number {
    const seconds = Math.ceil(((queued + 1) * this.meanRecent) / concurrency / 1000)
    return seconds < RETRY_MIN ? RETRY_MIN : seconds > RETRY_MAX ? RETRY_MAX : seconds
  }

  snapshot(queued: number, running: number): PoolStats {
    return {
      queued,
      running,
      completed: this.completed,
      failed: this.failed,
      rejected: { full: this.full, queueTimeout: this.queueTimeout, closed: this.closed, aborted: this.droppedAborted },
      aborted: this.aborted,
      meanWaitMs: this.waitCount === 0 ? 0 : this.waitTotal / this.waitCount,
      meanRunMs: this.completed === 0 ? 0 : this.runTotal / this.completed,
    }
  }
}
