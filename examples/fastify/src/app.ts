// A small quotes service on Fastify 5 with leak-guard: every request gets a deadline and an AbortSignal,
// upstream calls go through a bounded client, CPU work through a bounded thread pool, fan-out through
// `request.scope.spawn`, and readiness/debug routes show the state of the guard. The plugin's `shutdown`
// option drains `fastify.server` on `app.close()`.
import Fastify from 'fastify'
import { createDebugHandler, createThreadPool, isLeakGuardError } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'
import { leakGuard, readiness } from '@leak-guard/fastify'

export interface AppOptions {
  /** Base URL of the quotes service. */
  upstreamUrl: string
  /** Deadline of every request, in milliseconds. */
  timeout?: number
  /** Graceful shutdown: requests still running after `gracePeriod` ms are aborted, connections forced at `forceAfter`. */
  gracePeriod?: number
  forceAfter?: number
}

export async function createApp({ upstreamUrl, timeout = 5_000, gracePeriod = 10_000, forceAfter = 15_000 }: AppOptions) {
  const app = Fastify()
  await app.register(leakGuard, { timeout, shutdown: { gracePeriod, forceAfter } })
  const guard = app.leakGuard
  // At most 16 sockets to the quotes service; every call carries the request's signal and remaining time.
  const client = createHttpClient({ connections: 16, timeout: 2_000, guard })
  // One thread for reports; 4 more may wait, the next request gets 503 + Retry-After at once.
  const pool = createThreadPool({ filename: new URL('./report-worker.js', import.meta.url), threads: 1, maxQueue: 4, guard })
  const debug = createDebugHandler(guard)

  const quote = async (symbol: string, signal?: AbortSignal) => {
    const res = await client.fetch(`${upstreamUrl}/quotes/${encodeURIComponent(symbol)}`, { signal })
    if (!res.ok) {
      await res.arrayBuffer()
      throw Object.assign(new Error(`quotes service answered ${res.status}`), { statusCode: 502 })
    }
    return (await res.json()) as { symbol: string; price: number }
  }

  app.setErrorHandler((err, _request, reply) => {
    const status = (err as { statusCode?: number }).statusCode ?? 500
    if (isLeakGuardError(err) && err.headers !== undefined) void reply.headers(err.headers)
    void reply.code(status).send({ error: isLeakGuardError(err) ? err.code : status === 502 ? 'UPSTREAM_ERROR' : 'INTERNAL_ERROR' })
  })

  app.get<{ Params: { symbol: string } }>('/quotes/:symbol', async (request) => quote(request.params.symbol))

  // Fan-out: each lookup is background work owned by the request, aborted if the request ends first.
  app.get<{ Querystring: { symbols?: string } }>('/portfolio', async (request) => {
    const symbols = String(request.query.symbols ?? 'ACME,INITECH,GLOBEX').split(',').slice(0, 10)
    const quotes = await Promise.all(symbols.map((symbol) => request.scope.spawn((signal) => quote(symbol, signal))))
    return { total: quotes.reduce((sum, q) => sum + q.price, 0), quotes }
  })

  app.get<{ Querystring: { rows?: string } }>('/report', async (request) => {
    const rows = Math.min(Number(request.query.rows) || 200_000, 20_000_000)
    return pool.run({ rows }, { signal: request.scope.signal })
  })

  app.get('/ready', readiness(guard))
  // Protect this in production: it shows URLs and stacks.
  app.get('/debug/requests', (request, reply) => {
    reply.hijack()
    debug(request.raw, reply.raw)
  })

  return { app, guard }
}
