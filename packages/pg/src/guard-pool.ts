import type { Pool } from 'pg'
import { currentScope, invalid, subscribeAbort, type RequestScope } from '@leak-guard/core/adapter'
import { ClientState, Lease, guardedQuery, kState, type RawClient } from './lease.js'
import { resolveGuardPoolOptions, type GuardPoolOptions, type ResolvedGuardPoolOptions } from './options.js'

type ConnectCallback = (err: Error | undefined, client?: RawClient, release?: (err?: Error | boolean) => void) => void
type ConnectFn = (this: RawPool, callback?: ConnectCallback) => unknown

interface RawPool {
  connect: ConnectFn
  query: unknown
  end(): Promise<void>
  ending?: boolean
  _pendingQueue?: Array<{ callback: unknown }>
  [kGuarded]?: ResolvedGuardPoolOptions
}

/** Marks a guarded pool; shared across copies so two copies of this package never wrap one pool twice. */
const kGuarded = Symbol.for('leak-guard.pg.pool.v1')

/**
 * Removes our waiter from pg-pool's queue, so an aborted request never checks a connection out. Best
 * effort on pg-pool's internals: when the waiter is not found (a `connectionTimeoutMillis` wrapper, or
 * a new connection already being opened for it), the connection is handed back as soon as it arrives.
 */
function dropWaiter(pool: RawPool, callback: ConnectCallback): void {
  const queue = pool._pendingQueue
  if (!Array.isArray(queue)) return
  const index = queue.findIndex((item) => item.callback === callback)
  if (index !== -1) queue.splice(index, 1)
}

function checkout(pool: RawPool, original: ConnectFn, scope: RequestScope, options: ResolvedGuardPoolOptions, callback: ConnectCallback | undefined): unknown {
  let resolve!: (client: RawClient) => void
  let reject!: (err: Error) => void
  const promise =
    callback === undefined
      ? new Promise<RawClient>((res, rej) => {
          resolve = res
          reject = rej
        })
      : undefined
  const fail = (err: Error): void => {
    if (callback === undefined) reject(err)
    else callback(err)
  }
  const reason = scope.reason
  if (reason !== undefined) {
    process.nextTick(fail, reason)
    return promise
  }
  let settled = false
  const onClient: ConnectCallback = (err, client) => {
    if (settled) {
      // The request aborted while this connection was on its way: straight back to the pool, unused.
      if (err === undefined && client !== undefined) client.release()
      return
    }
    settled = true
    disposeAbort()
    if (err !== undefined || client === undefined) return fail(err ?? new Error('pg-pool returned no client'))
    // pg-native's client has neither the protocol connection (transaction status) nor the cancel key:
    // only its checkout is guarded (README, limits).
    if (client.connection === undefined) {
      if (callback === undefined) resolve(client)
      else callback(undefined, client, client.release)
      return
    }
    let state = client[kState]
    if (state === undefined) {
      state = client[kState] = new ClientState(client)
      client.query = guardedQuery
    }
    new Lease(scope, client, state, options)
    if (callback === undefined) resolve(client)
    else callback(undefined, client, client.release)
  }
  const disposeAbort = subscribeAbort(scope, (abortReason) => {
    if (settled) return
    settled = true
    dropWaiter(pool, onClient)
    fail(abortReason)
  })
  original.call(pool, onClient)
  return promise
}

/**
 * Makes a request's deadline and cancellation reach PostgreSQL through `pool`, in place, and returns
 * it: hand it on to Drizzle (`drizzle(pool)`), Kysely (`new PostgresDialect({ pool })`) or use
 * `pool.query()` / `pool.connect()` as before.
 *
 * Inside a request (`currentScope()`), a connection checkout waits only as long as the request lives;
 * each query runs with `statement_timeout` set to the request's remaining time; when the request aborts
 * its running query is cancelled in PostgreSQL (CancelRequest) and rejects with the request's reason
 * (the server's `57014` as `cause`); a connection leaves the request clean: rolled back if left in a
 * transaction, destroyed after a cancel. Outside a request the pool behaves exactly as before.
 *
 * @example
 * const pool = guardPool(new pg.Pool({ max: 10 }), { guard: middleware.guard })
 * app.get('/report', async (req, res) => res.json((await pool.query('SELECT ...')).rows))
 */
export function guardPool<P extends Pool>(pool: P, options?: GuardPoolOptions): P {
  const resolved = resolveGuardPoolOptions(options)
  const raw = pool as unknown as RawPool
  if (raw === null || typeof raw !== 'object' || typeof raw.connect !== 'function' || typeof raw.query !== 'function') {
    throw invalid('pool', 'a pg.Pool', pool)
  }
  if (raw[kGuarded] !== undefined) throw invalid('pool', 'a pg.Pool not guarded yet (guardPool() was already called on it)', pool)
  raw[kGuarded] = resolved
  const original = raw.connect
  // pg-pool's own query() checks out through this.connect(), so this one wrapper covers pool.query too.
  raw.connect = function connect(this: RawPool, callback?: ConnectCallback): unknown {
    const scope = currentScope()
    if (scope === undefined) return original.call(this, callback)
    return checkout(this, original, scope, resolved, callback)
  }
  resolved.guard?.register({
    close: () => (raw.ending === true ? Promise.resolve() : raw.end()),
  })
  return pool
}
