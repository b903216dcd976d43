import { expect } from 'chai'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import http, { createServer, type Server } from 'node:http'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import express from 'express'
import Koa from 'koa'
import Fastify, { type FastifyInstance } from 'fastify'
import { leakGuard as expressLeakGuard } from '@leak-guard/express'
import { leakGuard as fastifyLeakGuard } from '@leak-guard/fastify'
import { leakGuard as koaLeakGuard } from '@leak-guard/koa'
import type { Guard, LeakEvent } from '@leak-guard/core'
import { send } from '../helpers/http.js'

const thisFile = fileURLToPath(import.meta.url)
const source = readFileSync(thisFile, 'utf8').split('\n')
/** 1-based line of the line carrying `marker`, so the assertion survives edits above it. */
const lineOf = (marker: string): number => source.findIndex((line) => line.includes(marker) && !line.includes('lineOf(')) + 1

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Upstream {
  server: Server
  port: number
  hits: number
  /** Milliseconds the upstream waits before answering. */
  delay: number
}

async function startUpstream(delay = 0): Promise<Upstream> {
  const upstream: Upstream = { server: undefined as unknown as Server, port: 0, hits: 0, delay }
  upstream.server = createServer((_req, res) => {
    upstream.hits++
    const timer = setTimeout(() => res.end('upstream'), upstream.delay)
    res.on('close', () => clearTimeout(timer))
  })
  upstream.server.listen(0, '127.0.0.1')
  await once(upstream.server, 'listening')
  upstream.port = (upstream.server.address() as { port: number }).port
  return upstream
}

async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await sleep(5)
  }
}

describe('late-work detection', () => {
  let upstream: Upstream
  let app: FastifyInstance | undefined
  let server: Server | undefined
  let guards: Guard[] = []

  beforeEach(async () => {
    upstream = await startUpstream()
  })

  afterEach(async () => {
    if (app !== undefined) await app.close()
    if (server !== undefined) await new Promise((resolve) => server!.close(resolve))
    app = server = undefined
    upstream.server.closeAllConnections()
    await new Promise((resolve) => upstream.server.close(resolve))
    for (const guard of guards) guard.dispose()
    guards = []
  })

  async function fastifyApp(options: Parameters<typeof fastifyLeakGuard>[1], logs?: Array<Record<string, unknown>>): Promise<void> {
    const stream = {
      write(line: string) {
        logs?.push(JSON.parse(line) as Record<string, unknown>)
      },
    }
    app = Fastify({ logger: logs === undefined ? false : { level: 'warn', stream } })
    await app.register(fastifyLeakGuard, options)
    guards.push(app.leakGuard)
  }

  async function listen(): Promise<number> {
    await app!.listen({ port: 0, host: '127.0.0.1' })
    return (app!.server.address() as { port: number }).port
  }

  describe('when a handler fires fetch() after its response was sent', () => {
    it('reports late work of kind request with the route, the end reason and, with captureStacks, the handler file:line', async () => {
      const logs: Array<Record<string, unknown>> = []
      await fastifyApp({ captureStacks: true }, logs)
      const events: LeakEvent[] = []
      app!.leakGuard.on('leak', (event: LeakEvent) => events.push(event))
      app!.get('/users/:id', async (_request, reply) => {
        await reply.send('ok')
        setTimeout(() => {
          void fetch(`http://127.0.0.1:${upstream.port}/audit`).then((r) => r.text()) // FETCH-AFTER-RESPONSE
        }, 30)
        return reply
      })
      const port = await listen()
      const res = await send(port, { path: '/users/7' })
      expect(res.status).to.equal(200)
      await waitFor(() => events.length > 0 && upstream.hits > 0)
      await sleep(30)
      expect(events).to.have.length(1)
      const [event] = events
      expect(event.kind).to.equal('request')
      expect(event.route).to.equal('/users/:id')
      expect(event.url).to.equal('/users/7')
      expect(event.reason).to.equal('LG_ERR_REQUEST_ENDED')
      expect(event.lateBy).to.be.at.least(15)
      expect(event.stack).to.be.a('string')
      expect(event.stack!.split('\n')[0]).to.include(`${thisFile}:${lineOf('FETCH-AFTER-RESPONSE')}:`)
      expect(app!.leakGuard.stats().leaks.request).to.equal(1)
      // Fastify's own logger got the event at warn level.
      const warn = logs.find((l) => l.level === 40 && (l.leak as LeakEvent | undefined)?.kind === 'request')
      expect(warn, JSON.stringify(logs)).to.not.equal(undefined)
      expect(warn!.msg).to.match(/request outlived GET \/users\/:id/)
    })

    it('reports it without a stack when captureStacks is off, and counts it', async () => {
      await fastifyApp({})
      const events: LeakEvent[] = []
      app!.leakGuard.on('leak', (event: LeakEvent) => events.push(event))
      app!.get('/fire', async (_request, reply) => {
        await reply.send('ok')
        setTimeout(() => void fetch(`http://127.0.0.1:${upstream.port}/`).then((r) => r.text()), 20)
        return reply
      })
      const port = await listen()
      await send(port, { path: '/fire' })
      await waitFor(() => events.length > 0)
      expect(events[0].kind).to.equal('request')
      expect(events[0].stack).to.equal(undefined)
      expect(app!.leakGuard.stats().leaks.request).to.equal(1)
    })
  })

  describe('when a handler starts http.get() after its response was sent', () => {
    it('reports late work of kind request (node:http client)', async () => {
      await fastifyApp({ captureStacks: true })
      const events: LeakEvent[] = []
      app!.leakGuard.on('leak', (event: LeakEvent) => events.push(event))
      app!.get('/http', async (_request, reply) => {
        await reply.send('ok')
        setTimeout(() => {
          http.get(`http://127.0.0.1:${upstream.port}/`, (r) => r.resume()) // HTTP-GET-AFTER-RESPONSE
        }, 20)
        return reply
      })
      const port = await listen()
      await send(port, { path: '/http' })
      await waitFor(() => events.length > 0 && upstream.hits > 0)
      await sleep(30)
      expect(events).to.have.length(1)
      expect(events[0].kind).to.equal('request')
      expect(events[0].route).to.equal('/http')
      // Node 22.12+/24 publish http.client.request.created synchronously; Node 20 only .start, after the
      // socket is assigned, where the handler's frame is gone.
      if (events[0].stack?.includes(thisFile) === true) {
        expect(events[0].stack.split('\n')[0]).to.include(`${thisFile}:${lineOf('HTTP-GET-AFTER-RESPONSE')}:`)
      } else {
        expect(Number(process.versions.node.split('.')[0])).to.be.below(22)
      }
    })
  })

  describe('when a fetch() started during the request is still running after it ended', () => {
    it('reports it once, after the grace period, with the handler file:line', async () => {
      upstream.delay = 400
      await fastifyApp({ leakGracePeriod: 60, captureStacks: true })
      const events: Array<LeakEvent & { at: number }> = []
      app!.leakGuard.on('leak', (event: LeakEvent) => events.push({ ...event, at: performance.now() }))
      app!.get('/slow-call', async (_request, reply) => {
        void fetch(`http://127.0.0.1:${upstream.port}/slow`).then((r) => r.text()) // FETCH-BEFORE-END
        return reply.send('ok')
      })
      const port = await listen()
      const started = performance.now()
      const res = await send(port, { path: '/slow-call' })
      expect(res.status).to.equal(200)
      await waitFor(() => events.length > 0)
      expect(events[0].at - started).to.be.at.least(55)
      expect(events[0].kind).to.equal('request')
      expect(events[0].route).to.equal('/slow-call')
      expect(events[0].reason).to.equal('LG_ERR_REQUEST_ENDED')
      expect(events[0].lateBy).to.be.at.least(50)
      expect(events[0].stack).to.include(`${thisFile}:${lineOf('FETCH-BEFORE-END')}:`)
      await sleep(450) // the upstream answers; nothing more is reported
      expect(events).to.have.length(1)
    })

    it('does not report calls that finished before the request ended', async () => {
      await fastifyApp({ leakGracePeriod: 30 })
      const events: LeakEvent[] = []
      app!.leakGuard.on('leak', (event: LeakEvent) => events.push(event))
      app!.get('/awaited', async () => {
        const r = await fetch(`http://127.0.0.1:${upstream.port}/`)
        return r.text()
      })
      const port = await listen()
      const res = await send(port, { path: '/awaited' })
      expect(res.body).to.equal('upstream')
      await sleep(100)
      expect(events).to.have.length(0)
      expect(app!.leakGuard.stats().leaks.request).to.equal(0)
    })
  })

  describe('when a connection-limited undici Pool creates a queued request later', () => {
    it('does not blame the scope that happens to own the socket', async () => {
      upstream.delay = 40
      await fastifyApp({ leakGracePeriod: 30 })
      const events: LeakEvent[] = []
      app!.leakGuard.on('leak', (event: LeakEvent) => events.push(event))
      const pool = new Pool(`http://127.0.0.1:${upstream.port}`, { connections: 1 })
      try {
        app!.get('/pooled/:n', async (request) => {
          const r = await pool.request({ method: 'GET', path: `/${(request.params as { n: string }).n}` })
          return r.body.text()
        })
        const port = await listen()
        // The first request opens the pool's only socket in its own context, then ends.
        expect((await send(port, { path: '/pooled/0' })).body).to.equal('upstream')
        // The next two share that socket: the second waits in the pool's queue, and undici creates its
        // request from the socket's callbacks, in the first (ended) request's context.
        const replies = await Promise.all([send(port, { path: '/pooled/1' }), send(port, { path: '/pooled/2' })])
        expect(replies.map((r) => r.body)).to.deep.equal(['upstream', 'upstream'])
        await sleep(80)
        expect(upstream.hits).to.equal(3)
        expect(events).to.deep.equal([])
      } finally {
        await pool.close()
      }
    })
  })

  describe('with the Express adapter and a pino-compatible logger', () => {
    it('logs the leak through logger.warn(obj, msg)', async () => {
      const warned: Array<[Record<string, unknown>, string]> = []
      const mw = expressLeakGuard({ logger: { warn: (obj: object, msg?: string) => warned.push([obj as Record<string, unknown>, msg ?? '']) } })
      guards.push(mw.guard)
      const ex = express()
      ex.use(mw)
      ex.get('/x', (_req, res) => {
        res.send('ok')
        setTimeout(() => void fetch(`http://127.0.0.1:${upstream.port}/`).then((r) => r.text()), 20)
      })
      server = ex.listen(0, '127.0.0.1')
      await once(server, 'listening')
      await send((server.address() as { port: number }).port, { path: '/x' })
      await waitFor(() => warned.length > 0)
      expect((warned[0][0].leak as LeakEvent).kind).to.equal('request')
      expect(warned[0][1]).to.match(/^leak-guard: request outlived GET \/x by \d+ ms \(LG_ERR_REQUEST_ENDED\)$/)
    })

    it('logs through the same option on Koa', async () => {
      const warned: Array<Record<string, unknown>> = []
      const mw = koaLeakGuard({ logger: { warn: (obj: object) => warned.push(obj as Record<string, unknown>) } })
      guards.push(mw.guard)
      const koa = new Koa()
      koa.use(mw)
      koa.use((ctx) => {
        ctx.body = 'ok'
        setTimeout(() => void fetch(`http://127.0.0.1:${upstream.port}/`).then((r) => r.text()), 20)
      })
      server = koa.listen(0, '127.0.0.1')
      await once(server, 'listening')
      await send((server.address() as { port: number }).port, { path: '/k' })
      await waitFor(() => warned.length > 0)
      expect(warned[0].leak).to.include({ kind: 'request', url: '/k', reason: 'LG_ERR_REQUEST_ENDED' })
    })

    it('rejects a logger without warn()', () => {
      expect(() => expressLeakGuard({ logger: {} as never })).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    })
  })
})
