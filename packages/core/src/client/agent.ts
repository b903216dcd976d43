import * as http from 'node:http'
import * as https from 'node:https'
import { ClientQueueFullError } from '../errors.js'
import { boolean, checkKeys, integer, integerOrFalse, invalid, milliseconds } from '../options.js'
import { storage } from '../scope/context.js'
import { kSubscribe } from '../symbols.js'
import { isGuard } from '../brand.js'
import type { OriginStats } from './http-client.js'
import type { ClientOwner } from './options.js'

export interface AgentOptions {
  /**
   * `'https:'` gives an `https.Agent`, `'http:'` an `http.Agent`.
   * @default 'http:'
   */
  protocol?: 'http:' | 'https:'
  /**
   * Most sockets open at once to one host:port.
   * @default 32
   */
  maxSockets?: number
  /**
   * Most idle sockets kept per host:port for reuse.
   * @default 8
   */
  maxFreeSockets?: number
  /**
   * Most requests per host:port waiting for a socket once `maxSockets` are busy; the next one is
   * destroyed with `LG_ERR_CLIENT_QUEUE_FULL` (the library sees it as a request error). `0` means
   * "never wait"; `false` removes the bound.
   * @default 256
   */
  maxQueue?: number | false
  /**
   * Socket idle timeout in milliseconds: an idle kept-alive socket is closed after it. Keep it below the
   * upstream's idle timeout (Node's default is 5 s); a shorter `Keep-Alive: timeout` hint wins.
   * @default 4000
   */
  timeout?: number
  /**
   * Which idle socket is reused first: `'lifo'` keeps few sockets warm and lets the rest time out,
   * `'fifo'` spreads requests over all of them.
   * @default 'lifo'
   */
  scheduling?: 'lifo' | 'fifo'
  /**
   * Tie requests made inside a request scope to it: they are destroyed with the scope's reason when
   * the request times out, its client disconnects, the server shuts down or the request ends. Libraries
   * that pass their own `signal` keep it too.
   * @default true
   */
  scope?: boolean
  /**
   * A guard: the agent registers with it so shutdown destroys its sockets.
   * @default undefined
   */
  guard?: ClientOwner
}

const agentKeys = ['protocol', 'maxSockets', 'maxFreeSockets', 'maxQueue', 'timeout', 'scheduling', 'scope', 'guard'] as const

/** A bounded `http.Agent`/`https.Agent` from `createAgent()`. */
export interface BoundedAgent extends http.Agent {
  /**
   * Counts per origin (`http://host:port`): sockets `open` (busy or idle), `busy` sockets, requests
   * `queued` for a socket, requests `aborted` because their request scope aborted or ended, and
   * requests `rejected` with `LG_ERR_CLIENT_QUEUE_FULL`.
   */
  stats(): Record<string, OriginStats>
}

interface AgentInternals {
  requests: Record<string, unknown[] | undefined>
  sockets: Record<string, unknown[] | undefined>
  freeSockets: Record<string, unknown[] | undefined>
  getName(options: unknown): string
  addRequest(req: http.ClientRequest, options: { host?: string; port?: number | string }): void
}

/** The counters of one agent pool (one `getName()` key) that the agent itself does not keep. */
interface PoolCounters {
  origin: string
  aborted: number
  rejected: number
}

/**
 * Fails a request that never gets a socket the way http.Agent fails one whose socket could not be
 * created: `onSocket(null, error)` emits 'error' and 'close' on the next tick, after the caller of
 * `http.request()` had a chance to listen. (`req.destroy()` would wait for a socket forever.)
 */
function refuse(req: http.ClientRequest, reason: unknown): void {
  ;(req as unknown as { onSocket(socket: null, error: unknown): void }).onSocket(null, reason)
}

/**
 * Creates a bounded `http.Agent` (or `https.Agent`) for libraries that take one (axios' `httpAgent`,
 * got's `agent`, `http.request`): keep-alive with a socket cap, an idle timeout, a bound on requests
 * waiting for a socket, and requests tied to the current request scope. Throws `LG_ERR_INVALID_OPTION`
 * for any invalid option.
 *
 * @example
 * const httpAgent = createAgent({ maxSockets: 16, guard: app.leakGuard })
 * const api = axios.create({ httpAgent })
 */
export function createAgent(options?: AgentOptions): BoundedAgent {
  const o = checkKeys('createAgent()', options, agentKeys)
  const protocol = o.protocol ?? 'http:'
  if (protocol !== 'http:' && protocol !== 'https:') throw invalid('protocol', "`'http:'` or `'https:'`", protocol)
  const scheduling = o.scheduling ?? 'lifo'
  if (scheduling !== 'lifo' && scheduling !== 'fifo') throw invalid('scheduling', "`'lifo'` or `'fifo'`", scheduling)
  const guard = o.guard as ClientOwner | undefined
  if (guard !== undefined && !isGuard(guard)) {
    throw invalid('guard', 'a leak-guard Guard (`middleware.guard`, `fastify.leakGuard`)', guard)
  }
  const maxSockets = integer('maxSockets', o.maxSockets, 32, 1, 65_535)
  const maxFreeSockets = integer('maxFreeSockets', o.maxFreeSockets, 8, 1, 65_535)
  const maxQueue = integerOrFalse('maxQueue', o.maxQueue, 256, 0)
  const timeout = milliseconds('timeout', o.timeout, 4_000)
  const bindScope = boolean('scope', o.scope, true)

  const Ctor = protocol === 'https:' ? https.Agent : http.Agent
  const agent = new Ctor({ keepAlive: true, maxSockets, maxFreeSockets, timeout, scheduling })
  const internals = agent as unknown as AgentInternals
  const pools = new Map<string, PoolCounters>()
  const addRequest = internals.addRequest
  internals.addRequest = function boundedAddRequest(req, requestOptions) {
    const name = internals.getName(requestOptions)
    let counters = pools.get(name)
    if (counters === undefined) {
      counters = { origin: `${protocol}//${requestOptions.host ?? 'localhost'}:${requestOptions.port ?? ''}`, aborted: 0, rejected: 0 }
      pools.set(name, counters)
    }
    if (maxQueue !== false) {
      const busy = internals.sockets[name]?.length ?? 0
      const waiting = internals.requests[name]?.length ?? 0
      if (busy >= maxSockets && waiting >= maxQueue) {
        counters.rejected++
        refuse(req, new ClientQueueFullError(counters.origin, maxQueue))
        return
      }
    }
    if (bindScope) {
      const scope = storage.getStore()
      if (scope !== undefined) {
        if (scope.aborted) {
          counters.aborted++
          refuse(req, scope.reason)
          return
        }
        const pool = counters
        const dispose = scope[kSubscribe]((reason) => {
          if (req.destroyed) return
          pool.aborted++
          req.destroy(reason)
        })
        req.once('close', dispose)
      }
    }
    addRequest.call(this, req, requestOptions)
  }
  const bounded = agent as BoundedAgent
  bounded.stats = () => {
    const result: Record<string, OriginStats> = {}
    for (const [name, counters] of pools) {
      const busy = internals.sockets[name]?.length ?? 0
      const stats: OriginStats = {
        open: busy + (internals.freeSockets[name]?.length ?? 0),
        busy,
        queued: internals.requests[name]?.length ?? 0,
        aborted: counters.aborted,
        rejected: counters.rejected,
      }
      // Pools of one origin with different TLS options (one `getName()` key each) are summed.
      const previous = result[counters.origin]
      if (previous !== undefined) for (const key of Object.keys(stats) as Array<keyof OriginStats>) stats[key] += previous[key]
      result[counters.origin] = stats
    }
    return result
  }
  if (guard !== undefined) {
    const unregister = guard.register({
      close: () => {
        unregister()
        agent.destroy()
        return Promise.resolve()
      },
    })
  }
  return bounded
}
