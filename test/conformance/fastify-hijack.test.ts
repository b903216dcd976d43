import { expect } from 'chai'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyRequest } from 'fastify'
import websocket from '@fastify/websocket'
import WebSocket from 'ws'
import fastifyGuard from '@leak-guard/fastify'
import type { RequestScope } from '@leak-guard/core'

// Fastify's reply.hijack(): the handler writes the raw response itself (SSE by hand, a WebSocket
// upgrade). Fastify's own handlerTimeout clears its timer on hijack; leak-guard takes the response out
// of its deadline the same way, while a disconnect still ends the scope and a shutdown still aborts it.

const DEADLINE = 100
const fastify4 = createRequire(new URL('../matrix/fastify4/package.json', import.meta.url))('fastify') as typeof Fastify

interface Seen {
  scope?: RequestScope
  abortedBy?: string
  abortedAt?: number
}

function buildSse(fw: typeof Fastify, seen: Seen, events: number, shutdown?: { gracePeriod: number; forceAfter: number }) {
  const app = fw()
  void app.register(fastifyGuard, { timeout: DEADLINE, ...(shutdown ? { shutdown } : {}) })
  app.get('/events', (request, reply) => {
    seen.scope = request.scope
    request.scope.signal.addEventListener('abort', () => {
      seen.abortedBy = (request.scope.signal.reason as { code?: string }).code
      seen.abortedAt = performance.now()
    })
    reply.hijack()
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    let n = 0
    const timer = setInterval(() => {
      if (reply.raw.destroyed) return clearInterval(timer)
      reply.raw.write(`data: ${++n}\n\n`)
      if (n === events) {
        clearInterval(timer)
        reply.raw.end()
      }
    }, 50)
  })
  return app
}

for (const [title, fw] of [['fastify 5', Fastify], [`fastify 4`, fastify4]] as const) {
  describe(`reply.hijack() on ${title}`, () => {
    let app: ReturnType<typeof Fastify> | undefined
    afterEach(async () => {
      app?.server.closeAllConnections()
      await app?.close()
      app = undefined
    })

    it('a hijacked SSE route that runs longer than the deadline delivers every event, and its scope ends normally', async () => {
      const seen: Seen = {}
      app = buildSse(fw, seen, 6)
      await app.listen({ port: 0, host: '127.0.0.1' })
      const started = performance.now()
      const res = await new Promise<http.IncomingMessage>((resolve) => http.get(`http://127.0.0.1:${(app!.server.address() as AddressInfo).port}/events`, resolve))
      let text = ''
      res.setEncoding('utf8').on('data', (d: string) => (text += d))
      await once(res, 'end')
      expect(performance.now() - started).to.be.above(DEADLINE * 2)
      expect(res.statusCode).to.equal(200)
      expect(text.match(/data: \d+/g)).to.deep.equal(['data: 1', 'data: 2', 'data: 3', 'data: 4', 'data: 5', 'data: 6'])
      await sleep(20)
      expect(seen.abortedBy === undefined || seen.abortedBy === 'LG_ERR_REQUEST_ENDED').to.equal(true)
      expect(app.leakGuard.size).to.equal(0)
      expect(app.leakGuard.stats().ended).to.include({ ok: 1, timeout: 0 })
    })

    it('a client that leaves a hijacked response still aborts its scope (LG_ERR_CLIENT_CLOSED) and ends it', async () => {
      const seen: Seen = {}
      app = buildSse(fw, seen, 1_000)
      await app.listen({ port: 0, host: '127.0.0.1' })
      const req = http.get(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/events`)
      const res = (await once(req, 'response'))[0] as http.IncomingMessage
      res.resume()
      await sleep(DEADLINE * 2)
      expect(seen.abortedBy).to.equal(undefined)
      req.on('error', () => {})
      req.destroy()
      await sleep(50)
      expect(seen.abortedBy).to.equal('LG_ERR_CLIENT_CLOSED')
      expect(app.leakGuard.size).to.equal(0)
    })

    it('a shutdown aborts a hijacked response at gracePeriod (LG_ERR_SHUTDOWN) and destroys it at forceAfter if still open', async () => {
      const seen: Seen = {}
      app = buildSse(fw, seen, 1_000, { gracePeriod: 200, forceAfter: 600 })
      await app.listen({ port: 0, host: '127.0.0.1' })
      const req = http.get(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/events`)
      const res = (await once(req, 'response'))[0] as http.IncomingMessage
      res.resume()
      req.on('error', () => {})
      const closed = once(res.socket, 'close').then(() => performance.now())
      const started = performance.now()
      const closing = app.close()
      const at = await closed
      await closing
      app = undefined
      expect(seen.abortedBy).to.equal('LG_ERR_SHUTDOWN')
      expect(seen.abortedAt! - started).to.be.within(150, 550)
      // Not cut at the grace period: the handler owns the response until forceAfter.
      expect(at - started).to.be.above(550)
    })
  })
}

describe('@fastify/websocket route (real WebSocket client)', () => {
  let app: ReturnType<typeof Fastify> | undefined
  afterEach(async () => {
    await app?.close()
    app = undefined
  })

  it('stays open past the deadline, and its scope ends when the socket closes', async () => {
    const seen: Seen = {}
    app = Fastify()
    await app.register(fastifyGuard, { timeout: DEADLINE })
    await app.register(websocket)
    app.get('/ws', { websocket: true }, (socket: WebSocket, request: FastifyRequest) => {
      seen.scope = request.scope
      request.scope.signal.addEventListener('abort', () => {
        seen.abortedBy = (request.scope.signal.reason as { code?: string }).code
      })
      socket.on('message', (data: Buffer) => socket.send(`echo ${String(data)}`))
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const client = new WebSocket(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws`)
    await once(client, 'open')
    await sleep(DEADLINE * 3)
    expect(seen.abortedBy, 'aborted at the deadline').to.equal(undefined)
    expect(app.leakGuard.size).to.equal(1)
    client.send('ping')
    const [reply] = (await once(client, 'message')) as [Buffer]
    expect(String(reply)).to.equal('echo ping')
    client.close()
    await once(client, 'close')
    await sleep(50)
    expect(seen.abortedBy).to.be.oneOf(['LG_ERR_CLIENT_CLOSED', 'LG_ERR_REQUEST_ENDED'])
    expect(app.leakGuard.size).to.equal(0)
    expect(app.leakGuard.stats().ended.timeout).to.equal(0)
  })
})
