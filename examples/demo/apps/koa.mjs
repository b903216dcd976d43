// The demo app on Koa 3: the same routes unguarded (framework defaults) and guarded (leak-guard).
import { createServer } from 'node:http'
import Koa from 'koa'
import Router from '@koa/router'
import { bodyParser } from '@koa/bodyparser'
import { leakGuard } from '@leak-guard/koa'

export function build({ guarded, services, guardOptions }) {
  const app = new Koa()
  app.silent = true
  const middleware = guarded ? leakGuard(guardOptions) : undefined
  if (middleware) app.use(middleware)

  const router = new Router()
  router.get('/health', (ctx) => {
    ctx.body = 'ok'
  })
  router.post('/ingest', bodyParser(), (ctx) => {
    ctx.body = { received: Object.keys(ctx.request.body ?? {}).length }
  })
  router.get('/report', async (ctx) => {
    ctx.body = await services.report(ctx.query.id, ctx.scope)
  })
  router.get('/proxy', async (ctx) => {
    ctx.body = await services.proxy(ctx.query.id, ctx.scope)
  })
  router.get('/metrics', async (ctx) => {
    ctx.type = 'text/plain'
    ctx.body = await services.metrics(ctx.scope)
  })
  router.get('/chain', async (ctx) => {
    ctx.body = await services.chain(ctx.query.id, ctx.scope, Number(ctx.query.ms))
  })
  router.get('/export', async (ctx) => {
    ctx.body = await services.longExport(ctx.query.id, ctx.scope, Number(ctx.query.ms))
  })
  app.use(router.routes())

  const server = createServer(app.callback())
  return {
    server,
    guard: middleware?.guard,
    listen: () => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
