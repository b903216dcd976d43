import { expect } from 'chai'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import type { Guard, LeakEvent } from '@leak-guard/core'
import * as expressGuard from '@leak-guard/express'
import * as koaGuard from '@leak-guard/koa'

// Leak reports and dumps name the route pattern, not just the URL.
describe('route attribution', () => {
  let server: Server | undefined
  afterEach(async () => {
    server?.closeAllConnections()
    if (server) await new Promise((r) => server!.close(r))
    server = undefined
  })

  async function leakOf(handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void, guard: Guard, path: string) {
    const leaks: LeakEvent[] = []
    guard.on('leak', (event: LeakEvent) => leaks.push(event))
    server = createServer(handler).listen(0, '127.0.0.1')
    await once(server, 'listening')
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`)
    expect(res.status).to.equal(200)
    expect(await res.json()).to.have.property('route')
    await sleep(80)
    return leaks
  }

  it('Express: `baseUrl` + `req.route.path` of a mounted router', async () => {
    const app = express()
    const middleware = expressGuard.leakGuard({ leakGracePeriod: 30 })
    app.use(middleware)
    const api = express.Router()
    api.get('/users/:id', (req, res) => {
      void req.scope.spawn(() => new Promise(() => {})) // ignores its signal: a leak
      res.json({ route: req.scope.route })
    })
    app.use('/api', api)
    const leaks = await leakOf(app, middleware.guard, '/api/users/7')
    expect(leaks).to.have.length(1)
    expect(leaks[0]).to.include({ kind: 'spawn', route: '/api/users/:id', url: '/api/users/7' })
  })

  it('Koa: the pattern @koa/router matched', async () => {
    const app = new Koa()
    const middleware = koaGuard.leakGuard({ leakGracePeriod: 30 })
    app.use(middleware)
    const router = new Router()
    router.get('/users/:id', (ctx) => {
      void ctx.scope.spawn(() => new Promise(() => {}))
      ctx.body = { route: ctx.scope.route }
    })
    app.use(router.routes())
    const leaks = await leakOf(app.callback(), middleware.guard, '/users/7')
    expect(leaks).to.have.length(1)
    expect(leaks[0]).to.include({ kind: 'spawn', route: '/users/:id' })
  })
})
