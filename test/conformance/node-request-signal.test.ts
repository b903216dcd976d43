import { expect } from 'chai'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createShutdown } from '@leak-guard/core'
import { leakGuard as expressLeakGuard } from '@leak-guard/express'
import { leakGuard as fastifyLeakGuard } from '@leak-guard/fastify'
import { leakGuard as koaLeakGuard } from '@leak-guard/koa'
import { RawClient, sleep, statusOf } from '../server/helpers.js'

// Node 24.16+ and 26.1+ give IncomingMessage a lazy `signal` of its own, aborted when the socket closes
// before the request was read to its end — never on a deadline or a shutdown, which Node does not know
// about. Express's `req` inherits from IncomingMessage, so leak-guard's `req.signal` must shadow it; on Koa
// `ctx.signal` is leak-guard's and `ctx.req.signal` Node's; on Fastify `request.raw.signal` is Node's.
// Each test reads Node's signal through the prototype's own getter, so it is Node's whatever shadows it.
const nodeGetter = Object.getOwnPropertyDescriptor(http.IncomingMessage.prototype, 'signal')?.get
const nodeSignalOf = (req: http.IncomingMessage): AbortSignal => nodeGetter!.call(req) as AbortSignal

interface Seen {
  /** leak-guard's signal as the framework hands it out, and Node's, read in the handler. */
  ours?: AbortSignal
  nodes?: AbortSignal
  /** What the framework itself exposes as the raw request's `signal` (Koa `ctx.req`, Fastify `request.raw`). */
  raw?: AbortSignal
  /** The code of leak-guard's abort reason, and whether Node's signal had aborted at that moment. */
  code?: string
  nodesAbortedThen?: boolean
}

/** Records both signals of a request and, when leak-guard's aborts, the reason and Node's state then. */
function watch(seen: Seen, ours: AbortSignal, req: http.IncomingMessage): void {
  seen.ours = ours
  seen.nodes = nodeSignalOf(req)
  seen.raw = (req as { signal?: AbortSignal }).signal
  ours.addEventListener('abort', () => {
    seen.code = (ours.reason as { code?: string }).code
    seen.nodesAbortedThen = seen.nodes!.aborted
  })
}

async function until(check: () => boolean, ms = 3_000): Promise<void> {
  const deadline = performance.now() + ms
  while (!check() && performance.now() < deadline) await sleep(5)
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))
}

describe("Node's own IncomingMessage signal next to leak-guard's", function () {
  const cleanup: Array<() => unknown> = []
  before(function () {
    if (nodeGetter === undefined) {
      console.log(`      SKIPPED: Node ${process.version} gives IncomingMessage no signal of its own (Node 24.16+ and 26.1+ do)`)
      this.skip()
    }
  })
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
  })

  /** A keep-alive client on a raw socket: the connection outlives the 503, so only the deadline can abort. */
  async function hangOn(port: number): Promise<RawClient> {
    const client = new RawClient(port)
    cleanup.push(() => client.destroy())
    await client.connected
    client.get('/hang')
    return client
  }

  /** Sends a request that only the deadline answers; asserts leak-guard's signal aborted then and Node's did not. */
  async function expectOnlyOursAtDeadline(port: number, seen: Seen): Promise<void> {
    const client = await hangOn(port)
    const [reply] = await client.responses(1)
    expect(statusOf(reply)).to.equal(503)
    expect(seen.ours).to.not.equal(seen.nodes)
    expect(seen.code).to.equal('LG_ERR_TIMEOUT')
    expect(seen.nodesAbortedThen).to.equal(false)
    // The 503 went out on a kept-alive connection and Node counts the request as served: its signal
    // never aborts for it now (the disconnect test shows the same signal does abort on a close).
    await sleep(50)
    expect(seen.nodes!.aborted).to.equal(false)
  }

  describe('Express', () => {
    async function start(seen: Seen, timeout = 100): Promise<{ port: number; server: http.Server; middleware: ReturnType<typeof expressLeakGuard> }> {
      const app = express()
      const middleware = expressLeakGuard({ timeout })
      app.use(middleware)
      // Never answers: only leak-guard's deadline or shutdown can.
      app.get('/hang', (req) => watch(seen, req.signal, req))
      const server = http.createServer(app)
      const port = await listen(server)
      cleanup.push(() => new Promise((resolve) => server.close(resolve)), () => server.closeAllConnections())
      return { port, server, middleware }
    }

    it("req.signal is leak-guard's and aborts at the deadline; Node's signal of the same request does not", async () => {
      const seen: Seen = {}
      const { port } = await start(seen)
      await expectOnlyOursAtDeadline(port, seen)
      // Express's req inherits from IncomingMessage: leak-guard's getter shadows Node's.
      expect(seen.raw).to.equal(seen.ours)
    })

    it("req.signal aborts on shutdown with LG_ERR_SHUTDOWN while Node's signal has not", async () => {
      const seen: Seen = {}
      // A deadline far beyond the grace period: only the shutdown aborts.
      const { port, server, middleware } = await start(seen, 30_000)
      // Created at start-up, as in an app, so the drain knows the connection.
      const shutdown = createShutdown(server, { guard: middleware.guard, gracePeriod: 20, forceAfter: 2_000 })
      const client = await hangOn(port)
      await until(() => seen.ours !== undefined)
      const summary = await shutdown.close()
      expect(summary.aborted).to.equal(1)
      expect(summary.forced).to.equal(0)
      expect(statusOf((await client.responses(1))[0])).to.equal(503)
      expect(seen.code).to.equal('LG_ERR_SHUTDOWN')
      expect(seen.nodesAbortedThen).to.equal(false)
    })

    it("Node's own signal aborts on a client disconnect, and so does req.signal (LG_ERR_CLIENT_CLOSED)", async () => {
      const seen: Seen = {}
      const { port } = await start(seen)
      const client = await hangOn(port)
      await until(() => seen.ours !== undefined)
      client.destroy()
      await until(() => seen.nodes!.aborted && seen.ours!.aborted)
      expect(seen.code).to.equal('LG_ERR_CLIENT_CLOSED')
      expect(seen.nodes!.aborted).to.equal(true)
    })
  })

  describe('Koa', () => {
    it("ctx.signal is leak-guard's and aborts at the deadline; ctx.req.signal is Node's and does not", async () => {
      const seen: Seen = {}
      const app = new Koa()
      app.use(koaLeakGuard({ timeout: 100 }))
      app.use(async (ctx) => {
        watch(seen, ctx.signal, ctx.req)
        await new Promise(() => {}) // never settles: only the deadline answers
      })
      const server = http.createServer(app.callback())
      const port = await listen(server)
      cleanup.push(() => new Promise((resolve) => server.close(resolve)), () => server.closeAllConnections())
      await expectOnlyOursAtDeadline(port, seen)
      expect(seen.raw).to.equal(seen.nodes)
    })
  })

  describe('Fastify', () => {
    it("request.scope.signal is leak-guard's and aborts at the deadline; request.raw.signal is Node's and does not", async () => {
      const seen: Seen = {}
      const app = Fastify()
      await app.register(fastifyLeakGuard, { timeout: 100 })
      app.get('/hang', (request) => {
        watch(seen, request.scope.signal, request.raw)
        return new Promise(() => {})
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      cleanup.push(() => app.close())
      await expectOnlyOursAtDeadline((app.server.address() as AddressInfo).port, seen)
      expect(seen.raw).to.equal(seen.nodes)
    })
  })
})
