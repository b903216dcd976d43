import { expireDeadline, subscribeAbort, trackWork, withCause, type RequestScope } from '@leak-guard/core/adapter'
import { sendCancel } from './cancel.js'
import type { ResolvedGuardPoolOptions } from './options.js'

export type Callback = (err: Error | null | undefined, res?: unknown) => void
export type QueryFn = (this: RawClient, config: unknown, values?: unknown, callback?: unknown) => unknown

/** The parts of a node-postgres `Client` (as handed out by `pg.Pool`) that the guard uses. */
export interface RawClient {
  query: QueryFn
  release: (err?: Error | boolean | null) => void
  getTransactionStatus?: () => string | null
  connection?: { prependListener(event: string, fn: (msg: { status?: string }) => void): unknown }
  processID: number | null
  secretKey: number | null
  host?: string
  port?: number
  [kState]?: ClientState
}

/**
 * What the guard knows of a connection's `statement_timeout`: a number of milliseconds it set, the
 * session's own value (`'default'`, from the server or the pool's connection options), or `'unknown'`
 * when a SET may have been undone (see `Lease#applyTimeout`), which forces the next user to set or reset it.
 */
type Setting = number | 'default' | 'unknown'

export const kState = Symbol('leak-guard.pg.client')

/** The connection destroyed after a cancel: pg-pool removes a client released with an error. */
const cancelledConnection = new Error('leak-guard: connection destroyed after a cancel was sent for it')

function noop(): void {}

/**
 * How far above a request's remaining time a `statement_timeout` already set on the connection may be
 * and still be kept: 1/8 of it, at least 20 ms. Keeping it saves the SET's round trip (bench/pg) on
 * every query of a request and on most queries of the next requests with the same route deadline; the
 * server's own stop may then come up to that much after the deadline, while the cancel still stops the
 * query at the deadline itself. A value below the remaining time is never kept: it would fail a query
 * the request still had time for.
 */
function slackFor(needed: number): number {
  return needed >= 160 ? Math.ceil(needed / 8) : 20
}

/**
 * Per connection, created the first time a request checks it out: the `query` it had before (called
 * for everything the guard sends), the request that holds it now, and its `statement_timeout`.
 */
export class ClientState {
  readonly query: QueryFn
  lease: Lease | undefined = undefined
  session: Setting = 'default'
  /** The `SET LOCAL` value of the open transaction, if the guard set one. */
  local: Setting | undefined = undefined
  /** Transaction status from ReadyForQuery, for node-postgres versions without `getTransactionStatus()`. */
  tx: string | null = null
  readonly #client: RawClient
  #waiting: Array<() => void> | undefined = undefined

  constructor(client: RawClient) {
    this.#client = client
    this.query = client.query
    if (typeof client.getTransactionStatus !== 'function') {
      // Prepended, so the status is current when the query's own callback runs.
      client.connection?.prependListener('readyForQuery', (msg) => {
        this.tx = msg.status ?? null
      })
    }
  }

  /** 'I' idle, 'T' in a transaction, 'E' in a failed transaction (null: not known yet). */
  txStatus(): string | null {
    const client = this.#client
    return typeof client.getTransactionStatus === 'function' ? client.getTransactionStatus() : this.tx
  }

  /** True while statements wait behind one of the guard's own. */
  get busy(): boolean {
    return this.#waiting !== undefined
  }

  /** Runs `fn` (which submits a statement) now, or once the guard's own statement ahead of it is done. */
  submit(fn: () => void): void {
    if (this.#waiting === undefined) fn()
    else this.#waiting.push(fn)
  }

  /**
   * Sends one of the guard's own statements (SET, RESET, ROLLBACK); what is submitted meanwhile waits
   * for it instead of queueing inside node-postgres, which warns about a second query queued behind a
   * running one — and a connection pg-pool has just opened is not ready for its first query yet.
   */
  own(sql: string, done: (err: Error | null | undefined) => void): void {
    this.submit(() => {
      this.#waiting = []
      this.query.call(this.#client, sql, (err: Error | null | undefined) => {
        const waiting = this.#waiting ?? []
        this.#waiting = undefined
        done(err)
        for (const fn of waiting) this.submit(fn)
      })
    })
  }

  /**
   * Sends the app's query through `submit`, keeping node-postgres's calling forms: a submittable
   * (returned as is), a callback (returns undefined) or a promise.
   */
  send(config: unknown, values: unknown, callback: Callback | undefined): unknown {
    const client = this.#client
    if (isSubmittable(config)) {
      this.submit(() => this.query.call(client, config, values, callback))
      return config
    }
    if (callback !== undefined) {
      this.submit(() => this.query.call(client, config, values, callback))
      return undefined
    }
    return new Promise((resolve, reject) => {
      this.submit(() => this.query.call(client, config, values, (err: Error | null | undefined, res: unknown) => (err == null ? resolve(res) : reject(err))))
    })
  }
}

export function isSubmittable(config: unknown): boolean {
  return config !== null && typeof config === 'object' && typeof (config as { submit?: unknown }).submit === 'function'
}

/**
 * Replaces `client.query` on a connection the guard has seen: in a request's lease the lease runs the
 * query; otherwise it goes straight to the original, after resetting a `statement_timeout` a request
 * left on the connection (the reset is queued before the query, so it costs no await).
 */
export function guardedQuery(this: RawClient, config: unknown, values?: unknown, callback?: unknown): unknown {
  const state = this[kState]!
  const lease = state.lease
  if (lease !== undefined) return lease.query(config, values, callback)
  if (state.session !== 'default') {
    state.session = 'default'
    state.own('RESET statement_timeout', (err) => {
      if (err != null) state.session = 'unknown'
    })
  }
  if (!state.busy) return state.query.call(this, config, values, callback)
  if (typeof values === 'function') return state.send(config, undefined, values as Callback)
  return state.send(config, values, callback as Callback | undefined)
}

function labelOf(config: unknown): string {
  const text = typeof config === 'string' ? config : (config as { text?: unknown } | null)?.text
  if (typeof text !== 'string') return 'query'
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > 120 ? `${flat.slice(0, 117)}...` : flat
}

/**
 * A connection checked out inside a request: its queries carry the request's deadline as
 * `statement_timeout`, are attached to the request (dump, leak report) and are cancelled in PostgreSQL
 * when the request aborts. Ends with `release()`, which returns the connection clean (no open
 * transaction) or destroys it (a cancel was sent, the rollback failed, a query is still running).
 */
export class Lease {
  readonly scope: RequestScope
  readonly #client: RawClient
  readonly #state: ClientState
  readonly #options: ResolvedGuardPoolOptions
  readonly #poolRelease: (err?: Error | boolean | null) => void
  readonly #disposeAbort: () => void
  /** Statements the guard sent or queued on this lease (SETs and queries) that have not settled. */
  #running = 0
  #cancelled = false
  #released = false

  constructor(scope: RequestScope, client: RawClient, state: ClientState, options: ResolvedGuardPoolOptions) {
    this.scope = scope
    this.#client = client
    this.#state = state
    this.#options = options
    this.#poolRelease = client.release
    state.lease = this
    client.release = (err) => this.release(err)
    this.#disposeAbort = subscribeAbort(scope, () => this.#onAbort())
  }

  #onAbort(): void {
    if (this.#released) return
    if (this.#running > 0) {
      if (this.#options.cancel) this.#cancel()
      return
    }
    // Idle inside a transaction: roll it back now, so its locks go with the request (its later
    // queries, the user's COMMIT included, are refused with the abort reason).
    const status = this.#state.txStatus()
    if (status === 'T' || status === 'E') this.#state.own('ROLLBACK', noop)
  }

  #cancel(): void {
    this.#cancelled = true
    sendCancel(this.#client)
  }

  /** One of the guard's statements settled. */
  #settled(): void {
    this.#running--
    // A cancel that reached the backend between two statements of this lease is dropped by the server:
    // cancel the next one too. The next statement is written in this same tick, long before a new cancel
    // connection reaches the server.
    if (this.#cancelled && this.#running > 0) sendCancel(this.#client)
  }

  query(config: unknown, values: unknown, callback: unknown): unknown {
    const state = this.#state
    const scope = this.scope
    let cb = callback
    let vals = values
    if (typeof vals === 'function') {
      cb = vals
      vals = undefined
    }
    const submittable = isSubmittable(config)
    const reason = scope.reason
    if (reason !== undefined) {
      // Never send a query for a request that is over.
      if (submittable) {
        const handle = (config as { handleError?: (err: Error, con: unknown) => void }).handleError
        process.nextTick(() => handle?.call(config, reason, (this.#client as { connection?: unknown }).connection))
        return config
      }
      if (typeof cb === 'function') {
        process.nextTick(cb, reason)
        return undefined
      }
      return Promise.reject(reason)
    }
    if (this.#options.statementTimeout !== false) this.#applyTimeout()
    // pg-cursor, pg-query-stream and Query objects: they get the deadline's statement_timeout, but their
    // results are read in several round trips the guard does not follow (see the README's limits).
    if (submittable) return state.send(config, vals, cb as Callback | undefined)
    this.#running++
    const untrack = trackWork(scope, 'query', () => labelOf(config))
    const settle = (err: Error | null | undefined): Error | undefined => {
      untrack()
      this.#settled()
      return err == null ? undefined : this.#mapError(err)
    }
    const client = this.#client
    const run = (done: Callback): void =>
      state.submit(() => {
        // Aborted while it waited behind the SET: never sent, so no cancel can miss it.
        const late = scope.reason
        if (late !== undefined) done(late)
        else state.query.call(client, config, vals, done)
      })
    if (typeof cb === 'function') {
      const user = cb as Callback
      run((err, res) => {
        const error = settle(err)
        if (error === undefined) user(null, res)
        else user(error)
      })
      return undefined
    }
    return new Promise((resolve, reject) => {
      run((err, res) => {
        const error = settle(err)
        if (error === undefined) resolve(res)
        else reject(error)
      })
    })
  }

  /**
   * A query failed: if its request aborted, it rejects with the request's reason and the server's error
   * as `cause`. PostgreSQL's own `statement_timeout` firing just before the guard's timer (57014 with no
   * cancel sent, deadline passed) runs the request's deadline now, so the request answers 503, not 500.
   */
  #mapError(err: Error): Error {
    const scope = this.scope
    if (!scope.aborted && (err as { code?: unknown }).code === '57014' && !this.#cancelled) expireDeadline(scope)
    const reason = scope.reason
    return reason === undefined || err === reason ? err : withCause(reason, err)
  }

  /**
   * Makes the connection's `statement_timeout` fit the request's remaining time before a query:
   * keeps the value already set when it is within `slackFor()` above it, otherwise queues a SET in
   * front of the query (no await: node-postgres sends them in order). Outside a transaction the SET is
   * for the session, so the next requests can keep it; inside one it is `SET LOCAL`, which the
   * transaction's end undoes whether it commits or rolls back — a session SET inside a transaction
   * would come back after a ROLLBACK to whatever was set before BEGIN. A session SET that turns out to
   * have run inside a transaction (the app queued BEGIN without awaiting it) leaves the value
   * `'unknown'`, so the next user sets or resets it again.
   */
  #applyTimeout(): void {
    const state = this.#state
    const status = state.txStatus()
    if (status === 'E') return // everything but ROLLBACK fails there anyway
    const inTx = status === 'T'
    if (!inTx) state.local = undefined
    const current = inTx ? (state.local ?? state.session) : state.session
    const remaining = this.scope.remaining()
    let target: number | 'default'
    if (remaining === Infinity) {
      // A request without a deadline (a streaming route) must not inherit another request's value.
      if (current === 'default') return
      target = 'default'
    } else {
      const needed = remaining < 1 ? 1 : Math.ceil(remaining)
      const slack = slackFor(needed)
      if (typeof current === 'number' && current >= needed && current <= needed + slack) return
      target = needed + (slack >> 1)
    }
    const sql = target === 'default' ? (inTx ? 'SET LOCAL statement_timeout TO DEFAULT' : 'RESET statement_timeout') : `SET ${inTx ? 'LOCAL ' : ''}statement_timeout = ${target}`
    if (inTx) state.local = target
    else state.session = target
    this.#running++
    state.own(sql, (err) => {
      this.#settled()
      if (err != null || (!inTx && state.txStatus() !== 'I')) {
        if (inTx) state.local = 'unknown'
        else state.session = 'unknown'
      }
    })
  }

  /**
   * The app released the connection (or pg-pool did, after `pool.query`). Back to the pool only when
   * clean: destroyed after a cancel (a late cancel must not hit the next user's query) or while one of
   * the request's statements still runs; rolled back first when left in a transaction, and destroyed
   * if the rollback fails.
   */
  release(err?: Error | boolean | null): void {
    if (this.#released) return this.#poolRelease(err) // pg-pool throws on a double release
    this.#released = true
    this.#disposeAbort()
    const state = this.#state
    state.lease = undefined
    const release = this.#poolRelease
    // Truthy, as pg-pool reads it: its own query() releases with `null` after a success.
    if (err) return release(err)
    if (this.#cancelled || this.#running > 0) return release(cancelledConnection)
    const status = state.txStatus()
    if (status === 'T' || status === 'E') {
      state.local = undefined
      state.own('ROLLBACK', (rollbackError) => {
        release(rollbackError ?? (state.txStatus() === 'I' ? undefined : new Error('leak-guard: connection still in a transaction after ROLLBACK')))
      })
      return
    }
    release()
  }
}
