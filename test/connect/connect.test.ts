import { expect } from 'chai'
import * as http from 'node:http'
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import { createClient, type ConnectRouter, type HandlerContext } from '@connectrpc/connect'
import { connectNodeAdapter, createConnectTransport } from '@connectrpc/connect-node'
import { createHttpClient, type HttpClient } from '@leak-guard/core/client'
import type { RequestScope } from '@leak-guard/core'
import { leakGuard as expressGuard, leakGuardErrorHandler } from '@leak-guard/express'
import { leakGuard as koaGuard } from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import { BudgetService } from './gen/budget_pb.js'

// leak-guard against Connect (@connectrpc/connect-node), an implementation of the deadline header
// nobody here wrote. (a) A Connect server called through createHttpClient inside a leak-guard request
// gets the request's remaining time as its own deadline (ctx.timeoutMs()) and its ctx.signal aborts
// when the leak-guard request is aborted. (b) A Connect client's timeoutMs becomes the deadline of an
// Express, Koa or Fastify route. The service is generated from proto/budget.proto (generate.mjs).

const PATH = '/leakguard.test.v1.BudgetService/Probe'
const connectHeaders = { 'content-type': 'application/json', 'connect-protocol-version': '1' }

async function listen(server: http.Server): Promise<string> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function close(server: http.Server | undefined): Promise<void> {
  if (server === undefined) return
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

describe('deadline headers with Connect (@connectrpc/connect-node)', function () {
  this.timeout(20_000)

  describe('(a) a Connect server called through createHttpClient inside a leak-guard request', () => {
    let connectServer: http.Server | undefined
    let front: http.Server | undefined
    let client: HttpClient | undefined
    /** What the Connect handler saw: ctx.timeoutMs() on arrival, and when its ctx.signal aborted. */
    let calls: Array<{ timeoutMs: number | undefined; arrivedAt: number; abortedAt?: number }>

    beforeEach(async () => {
      calls = []
      const routes = (router: ConnectRouter) =>
        router.service(BudgetService, {
          async probe(req, ctx: HandlerContext) {
            const call: (typeof calls)[number] = { timeoutMs: ctx.timeoutMs(), arrivedAt: performance.now() }
            calls.push(call)
            ctx.signal.addEventListener('abort', () => (call.abortedAt = performance.now()), { once: true })
            await sleep(req.waitMs, undefined, { signal: ctx.signal }).catch(() => {})
            return { timeoutMs: call.timeoutMs ?? -1, aborted: ctx.signal.aborted }
          },
        })
      connectServer = http.createServer(connectNodeAdapter({ routes }))
    })

    afterEach(async () => {
      await client?.destroy()
      client = undefined
      await close(front)
      await close(connectServer)
      front = connectServer = undefined
    })

    /** An Express app guarded with a 600 ms deadline whose route calls the Connect service. */
    async function serveFront(connectUrl: string, waitMs: number): Promise<{ url: string; sentWith: number[] }> {
      const c = (client = createHttpClient())
      const sentWith: number[] = []
      const app = express()
      app.use(expressGuard({ timeout: 600 }))
      app.get('/', async (req, res, next) => {
        try {
          sentWith.push(req.scope.remaining())
          const response = await c.fetch(`${connectUrl}${PATH}`, { method: 'POST', headers: connectHeaders, body: JSON.stringify({ waitMs }) })
          res.status(response.status).type('json').send(await response.text())
        } catch (error) {
          next(error)
        }
      })
      // The call's rejection after the 503 or the client's leaving is the abort itself: not an error to log.
      app.use(leakGuardErrorHandler())
      front = http.createServer(app)
      return { url: await listen(front), sentWith }
    }

    it("sees ctx.timeoutMs() equal to the request's remaining time", async () => {
      const connectUrl = await listen(connectServer!)
      const { url, sentWith } = await serveFront(connectUrl, 0)
      const answer = await fetch(url)
      expect(answer.status).to.equal(200)
      const body = (await answer.json()) as { timeoutMs: number }
      expect(calls).to.have.length(1)
      expect(calls[0]!.timeoutMs).to.be.a('number')
      expect(body.timeoutMs).to.equal(calls[0]!.timeoutMs)
      // What the request had left when it made the call, less no more than 20 ms.
      expect(calls[0]!.timeoutMs!).to.be.at.most(sentWith[0]!).and.at.least(sentWith[0]! - 20)
    })

    it('aborts ctx.signal when the leak-guard request is aborted (its client leaves)', async () => {
      const connectUrl = await listen(connectServer!)
      const { url } = await serveFront(connectUrl, 5_000)
      const { port } = new URL(url)
      const socket: Socket = await new Promise((resolve) => {
        const s = netConnect(Number(port), '127.0.0.1', () => resolve(s))
      })
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      while (calls.length === 0) await sleep(5)
      const droppedAt = performance.now()
      socket.destroy()
      while (calls[0]!.abortedAt === undefined && performance.now() - droppedAt < 2_000) await sleep(5)
      expect(calls[0]!.abortedAt, 'ctx.signal aborted').to.be.a('number')
      expect(calls[0]!.abortedAt! - droppedAt).to.be.below(200)
    })

    it("aborts ctx.signal at the leak-guard request's deadline, long before its own work would end", async () => {
      const connectUrl = await listen(connectServer!)
      const { url, sentWith } = await serveFront(connectUrl, 5_000)
      const answer = await fetch(url)
      // Two deadlines end at the same moment: the front's own (503), and the Connect server's, taken from the
      // header rounded down, so never later. When the server's lands first, its handler returns early with
      // `aborted: true` and the front may still forward that before its own timer fires.
      if (answer.status !== 503) {
        expect(answer.status).to.equal(200)
        expect(((await answer.json()) as { aborted: boolean }).aborted).to.equal(true)
      }
      while (calls[0]?.abortedAt === undefined) await sleep(5)
      const call = calls[0]!
      expect(call.timeoutMs!).to.be.at.most(sentWith[0]!)
      // Aborted around the leak-guard request's deadline (its own, from the header, or the call's cut,
      // whichever lands first), not after the 5 s of work.
      expect(call.abortedAt! - call.arrivedAt).to.be.below(call.timeoutMs! + 1_000)
    })
  })

  describe('(b) a Connect client with timeoutMs calling a guarded route', () => {
    let server: http.Server | undefined
    let closeApp: (() => Promise<void>) | undefined

    afterEach(async () => {
      await closeApp?.()
      closeApp = undefined
      await close(server)
      server = undefined
    })

    /** The route answers like the Probe method: `timeoutMs` = its scope's remaining time at entry. */
    const kinds: Record<string, (record: (scope: RequestScope) => unknown) => Promise<string>> = {
      async express(record) {
        const app = express()
        app.use(expressGuard({ timeout: 30_000 }))
        app.post(PATH, async (req, res) => {
          const out = record(req.scope)
          if (out instanceof Promise) await out
          if (!res.headersSent) res.json({ timeoutMs: Math.floor(req.scope.remaining()) })
        })
        server = http.createServer(app)
        return listen(server)
      },
      async koa(record) {
        const app = new Koa()
        app.use(koaGuard({ timeout: 30_000 }))
        app.use(async (ctx) => {
          const out = record(ctx.scope)
          if (out instanceof Promise) await out
          ctx.body = { timeoutMs: Math.floor(ctx.scope.remaining()) }
        })
        server = http.createServer(app.callback())
        return listen(server)
      },
      async fastify(record) {
        const app = Fastify()
        await app.register(fastifyGuard, { timeout: 30_000, shutdown: false })
        app.post(PATH, async (request) => {
          const out = record(request.scope)
          if (out instanceof Promise) await out
          return { timeoutMs: Math.floor(request.scope.remaining()) }
        })
        await app.listen({ port: 0, host: '127.0.0.1' })
        closeApp = () => app.close()
        return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
      },
    }

    for (const [name, start] of Object.entries(kinds)) {
      it(`${name}: the route's scope deadline is the Connect client's timeoutMs`, async () => {
        const seen: Array<{ remaining: number; source: string }> = []
        const url = await start((scope) => seen.push({ remaining: scope.remaining(), source: scope.deadlineSource }))
        const connect = createClient(BudgetService, createConnectTransport({ baseUrl: url, httpVersion: '1.1', useBinaryFormat: false }))
        const answer = await connect.probe({ waitMs: 0 }, { timeoutMs: 800 })
        expect(seen).to.have.length(1)
        expect(seen[0]!.source).to.equal('inbound')
        expect(seen[0]!.remaining).to.be.at.most(800).and.at.least(780)
        expect(answer.timeoutMs).to.be.at.most(800).and.at.least(770)
      })

      it(`${name}: a plain POST with the Connect headers gets the 503 at that time`, async () => {
        const url = await start((scope) => once(scope.signal, 'abort'))
        const started = performance.now()
        const answer = await fetch(`${url}${PATH}`, { method: 'POST', headers: { ...connectHeaders, 'connect-timeout-ms': '300' }, body: '{}' })
        const elapsed = performance.now() - started
        expect(answer.status).to.equal(503)
        expect(answer.headers.get('retry-after')).to.equal('1')
        // At the caller's 300 ms, far from the route's own 30 s.
        expect(elapsed).to.be.at.least(290).and.below(3_000)
      })
    }
  })
})
