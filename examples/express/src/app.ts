// A small quotes service on Express 5 with leak-guard: every request gets a deadline and an AbortSignal,
// upstream calls go through a bounded client, CPU work through a bounded thread pool, fan-out through
// `req.scope.spawn`, and readiness/debug routes show the state of the guard.
import express, { type NextFunction, type Request, type Response } from 'express'
import { createDebugHandler, createThreadPool, isLeakGuardError } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'
import { leakGuard, leakGuardErrorHandler, readiness } from '@leak-guard/express'

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

  const quote = async (symbol: string, signal?: AbortSignal) => {
    const res = await client.fetch(`${upstreamUrl}/quotes/${encodeURIComponent(symbol)}`, { signal })
    if (!res.ok) {
      await res.arrayBuffer()
      throw Object.assign(new Error(`quotes service answered ${res.status}`), { statusCode: 502 })
    }
    return (await res.json()) as { symbol: string; price: number }
  }

  const app = express()
  app.use(middleware)

  app.get('/quotes/:symbol', async (req, res) => {
    res.json(await quote(req.params.symbol))
  })

  // Fan-out: each lookup is background work owned by the request, aborted if the request ends first.
  app.get('/portfolio', async (req, res) => {
    const symbols = String(req.query.symbols ?? 'ACME,INITECH,GLOBEX').split(',').slice(0, 10)
    const quotes = await Promise.all(symbols.map((symbol) => req.scope.spawn((signal) => quote(symbol, signal))))
    res.json({ total: quotes.reduce((sum, q) => sum + q.price, 0), quotes })
  })

  app.get('/report', async (req, res) => {
    const rows = Math.min(Number(req.query.rows) || 200_000, 20_000_000)
    res.json(await pool.run({ rows }, { signal: req.signal }))
  })

  app.get('/ready', readiness(guard))
  // Protect this in production: it shows URLs and stacks.
  app.get('/debug/requests', createDebugHandler(guard))

  app.use(leakGuardErrorHandler())
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err)
    const status = (err as { statusCode?: number }).statusCode ?? 500
    if (isLeakGuardError(err) && err.headers !== undefined) res.set(err.headers)
    res.status(status).json({ error: isLeakGuardError(err) ? err.code : status === 502 ? 'UPSTREAM_ERROR' : 'INTERNAL_ERROR' })
  })

  return { app, guard }
}
