// The demo app on Express 5: the same routes unguarded (framework defaults) and guarded (leak-guard).
import { createServer } from 'node:http'
import express from 'express'
import { leakGuard, leakGuardErrorHandler } from '@leak-guard/express'

export function build({ guarded, services, guardOptions }) {
  const app = express()
  const middleware = guarded ? leakGuard(guardOptions) : undefined
  if (middleware) app.use(middleware)

  app.get('/health', (_req, res) => {
    res.send('ok')
  })
  app.post('/ingest', express.json(), (req, res) => {
    res.json({ received: Object.keys(req.body ?? {}).length })
  })
  app.get('/report', async (req, res) => {
    res.json(await services.report(req.query.id, req.scope))
  })
  app.get('/proxy', async (req, res) => {
    res.json(await services.proxy(req.query.id, req.scope))
  })
  app.get('/metrics', async (req, res) => {
    res.type('text/plain').send(await services.metrics(req.scope))
  })
  app.get('/chain', async (req, res) => {
    res.json(await services.chain(req.query.id, req.scope, Number(req.query.ms)))
  })
  app.get('/export', async (req, res) => {
    res.json(await services.longExport(req.query.id, req.scope, Number(req.query.ms)))
  })

  if (middleware) app.use(leakGuardErrorHandler())
  // Answer errors (503 from a full pool, 502 from a failed upstream call) without Express's stderr log.
  app.use((err, _req, res, next) => {
    if (res.headersSent) return next(err)
    res.set(err.headers ?? {}).status(err.statusCode ?? 500).json({ code: err.code ?? 'ERROR' })
  })

  const server = createServer(app)
  return {
    server,
    guard: middleware?.guard,
    listen: () => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
