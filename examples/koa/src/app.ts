// A small quotes service on Koa 3 with leak-guard: every request gets a deadline and an AbortSignal,
// upstream calls go through a bounded client, CPU work through a bounded thread pool, fan-out through
// `ctx.scope.spawn`, and readiness/debug routes show the state of the guard.
import Koa from 'koa'
import Router from '@koa/router'
import { createDebugHandler, createThreadPool, isLeakGuardError } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'
import { leakGuard, readiness } from '@leak-guard/koa'

export interface AppOptions {
  /** Base URL of the quotes service. */
  upstreamUrl: string
  /** Deadline of every request, in milliseconds. */
  timeout?: number
}

export function createApp({ upstreamUrl, timeout = 5_000 }: AppOptions) {
  const middleware = leakGuard({ timeout })
  const guard = middleware.guard
  // At most 16 sockets to the quotes service; every call carries the request's signal and remaining time.
  const client = createHttpClient({ connections: 16, timeout: 2_000, guard })
  // One thread for reports; 4 more may wait, the next request gets 503 + Retry-After at once.
  const pool = createThreadPool({ filename: new URL('./report-worker.js', import.meta.url), threads: 1, maxQueue: 4, guard })
  const debug = createDebugHandler(guard)

  const quote = async (symbol: string, signal?: AbortSignal) => {
    const res = await client.fetch(`${upstreamUrl}/quotes/${encodeURIComponent(symbol)}`, { signal })
    if (!res.ok) {
      await res.arrayBuffer()
      throw Object.assign(new Error(`quotes service answered ${res.status}`), { status: 502 })
    }
    return (await res.json()) as { symbol: string; price: number }
  }

  const app = new Koa()
  // leak-guard first, so its deadline covers everything below; errors are turned into JSON just inside it.
  app.use(middleware)
  app.use(async (ctx, next) => {
    try {
      await next()
    } catch (err) {
      const status = (err as { status?: number }).status ?? 500
      if (isLeakGuardError(err) && err.headers !== undefined) ctx.set(err.headers)
      ctx.status = status
      ctx.body = { error: isLeakGuardError(err) ? err.code : status === 502 ? 'UPSTREAM_ERROR' : 'INTERNAL_ERROR' }
    }
  })

  const router = new Router()
  router.get('/quotes/:symbol', async (ctx) => {
    ctx.body = await quote(ctx.params.symbol!)
  })
  // Fan-out: each lookup is background work owned by the request, aborted if the request ends first.
  router.get('/portfolio', async (ctx) => {
    const symbols = String(ctx.query.symbols ?? 'ACME,INITECH,GLOBEX').split(',').slice(0, 10)
    const quotes = await Promise.all(symbols.map((symbol) => ctx.scope.spawn((signal) => quote(symbol, signal))))
    ctx.body = { total: quotes.reduce((sum, q) => sum + q.price, 0), quotes }
  })
  router.get('/report', async (ctx) => {
    const rows = Math.min(Number(ctx.query.rows) || 200_000, 20_000_000)
    ctx.body = await pool.run({ rows }, { signal: ctx.signal })
  })
  router.get('/ready', readiness(guard))
  // Protect this in production: it shows URLs and stacks.
  router.get('/debug/requests', (ctx) => {
    ctx.respond = false
    debug(ctx.req, ctx.res)
  })
  app.use(router.routes())

  return { app, guard }
}
