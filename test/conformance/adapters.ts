import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createServer, type Server } from 'node:http'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import { bodyParser } from '@koa/bodyparser'
import Fastify from 'fastify'
import { currentSignal, type Guard, type GuardOptions, type RequestScope } from '@leak-guard/core'
import * as expressGuard from '@leak-guard/express'
import * as koaGuard from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import { Probe, work } from './probe.js'

/** Per-route timeout of `/long`, in ms: longer than the default the suite gives the guard. */
export const LONG_TIMEOUT = 400

export interface Harness {
  name: string
  url: string
  port: number
  server: Server
  guard: Guard
  probe: Probe
  /** Every response object the app handled, to check that no leak-guard listener stays on it. */
  responses: Set<NodeJS.EventEmitter>
  close(): Promise<void>
}

export interface AdapterKit {
  name: 'express' | 'koa' | 'fastify'
  start(options?: GuardOptions): Promise<Harness>
  /** Creating the guard with `options` (throws, or rejects for Fastify's register). */
  create(options: unknown): Promise<unknown>
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

function param(query: unknown, name: string): string | undefined {
  const value = (query as Record<string, unknown>)[name]
  return typeof value === 'string' ? value : undefined
}

const expressKit: AdapterKit = {
  name: 'express',
  async create(options) {
    return expressGuard.leakGuard(options as GuardOptions)
  },
  async start(options) {
    const probe = new Probe()
    const responses = new Set<NodeJS.EventEmitter>()
    const app = express()
    const middleware = expressGuard.leakGuard(options)
    app.use(middleware)
    app.use((_req, res, next) => {
      responses.add(res)
      next()
    })
    app.use(express.json())
    const id = (req: express.Request): string => String(req.headers['x-id'])
    const ok: express.RequestHandler = (req, res) => {
      res.json(work.ok(probe, id(req), req.signal, req.body))
    }
    const slow: express.RequestHandler = async (req, res) => {
      res.json(await work.slow(probe, id(req), req.signal, Number(param(req.query, 'ms') ?? 50), param(req.query, 'fail') === '1'))
    }
    const hang: express.RequestHandler = async (req, res) => {
      res.json(await work.hang(probe, id(req), req.signal))
    }
    app.get('/ok', ok)
    app.post('/ok', ok)
    app.get('/slow', slow)
    app.post('/slow', slow)
    app.get('/hang', hang)
    app.post('/hang', hang)
    app.get('/long', expressGuard.withTimeout(LONG_TIMEOUT), slow)
    app.get('/hang-long', expressGuard.withTimeout(LONG_TIMEOUT), hang)
    app.get('/stream', expressGuard.withTimeout(false), async (req, res) => {
      probe.start(id(req), req.signal)
      res.write('a')
      await sleep(Number(param(req.query, 'ms') ?? 50))
      res.end('b')
    })
    app.get('/headers-then-hang', async (req, res) => {
      probe.start(id(req), req.signal)
      res.write('partial')
      await once(req.signal, 'abort')
    })
    app.get('/context', async (req, res) => {
      res.json(await work.context(probe, id(req), req.scope))
    })
    app.get('/context-off', (_req, res) => {
      res.json({ current: currentSignal() !== undefined })
    })
    app.use(expressGuard.leakGuardErrorHandler())
    const server = createServer(app)
    const port = await listen(server)
    return { name: 'express', url: `http://127.0.0.1:${port}`, port, server, guard: middleware.guard, probe, responses, close: () => closeServer(server) }
  },
}

const koaKit: AdapterKit = {
  name: 'koa',
  async create(options) {
    return koaGuard.leakGuard(options as GuardOptions)
  },
  async start(options) {
    const probe = new Probe()
    const responses = new Set<NodeJS.EventEmitter>()
    const app = new Koa()
    const middleware = koaGuard.leakGuard(options)
    app.use(middleware)
    app.use((ctx, next) => {
      responses.add(ctx.res)
      return next()
    })
    app.use(bodyParser())
    const router = new Router()
    const id = (ctx: Koa.Context): string => String(ctx.get('x-id'))
    const ok: Koa.Middleware = (ctx) => {
      ctx.body = work.ok(probe, id(ctx), ctx.signal, ctx.request.body)
    }
    const slow: Koa.Middleware = async (ctx) => {
      ctx.body = await work.slow(probe, id(ctx), ctx.signal, Number(param(ctx.query, 'ms') ?? 50), param(ctx.query, 'fail') === '1')
    }
    const hang: Koa.Middleware = async (ctx) => {
      ctx.body = await work.hang(probe, id(ctx), ctx.signal)
    }
    router.get('/ok', ok)
    router.post('/ok', ok)
    router.get('/slow', slow)
    router.post('/slow', slow)
    router.get('/hang', hang)
    router.post('/hang', hang)
    router.get('/long', koaGuard.withTimeout(LONG_TIMEOUT), slow)
    router.get('/hang-long', koaGuard.withTimeout(LONG_TIMEOUT), hang)
    router.get('/stream', koaGuard.withTimeout(false), (ctx) => {
      probe.start(id(ctx), ctx.signal)
      const body = new PassThrough()
      ctx.body = body
      body.write('a')
      setTimeout(() => body.end('b'), Number(param(ctx.query, 'ms') ?? 50))
    })
    router.get('/headers-then-hang', (ctx) => {
      probe.start(id(ctx), ctx.signal)
      const body = new PassThrough()
      ctx.body = body
      body.write('partial')
    })
    router.get('/context', async (ctx) => {
      ctx.body = await work.context(probe, id(ctx), ctx.scope)
    })
    router.get('/context-off', (ctx) => {
      ctx.body = { current: currentSignal() !== undefined }
    })
    app.use(router.routes())
    const server = createServer(app.callback())
    const port = await listen(server)
    return { name: 'koa', url: `http://127.0.0.1:${port}`, port, server, guard: middleware.guard, probe, responses, close: () => closeServer(server) }
  },
}

const fastifyKit: AdapterKit = {
  name: 'fastify',
  async create(options) {
    const app = Fastify()
    try {
      await app.register(fastifyGuard, options as GuardOptions)
      await app.ready()
      return app
    } finally {
      await app.close().catch(() => {})
    }
  },
  async start(options) {
    const probe = new Probe()
    const responses = new Set<NodeJS.EventEmitter>()
    const app = Fastify()
    await app.register(fastifyGuard, options ?? {})
    app.addHook('onRequest', async (_request, reply) => {
      responses.add(reply.raw)
    })
    type Req = { headers: Record<string, unknown>; query: unknown; body: unknown; scope: RequestScope }
    const id = (request: Req): string => String(request.headers['x-id'])
    const ok = async (request: Req) => work.ok(probe, id(request), request.scope.signal, request.body)
    const slow = async (request: Req) =>
      work.slow(probe, id(request), request.scope.signal, Number(param(request.query, 'ms') ?? 50), param(request.query, 'fail') === '1')
    const hang = async (request: Req) => work.hang(probe, id(request), request.scope.signal)
    app.get('/ok', ok)
    app.post('/ok', ok)
    app.get('/slow', slow)
    app.post('/slow', slow)
    app.get('/hang', hang)
    app.post('/hang', hang)
    app.get('/long', { config: { leakGuard: { timeout: LONG_TIMEOUT } } }, slow)
    app.get('/hang-long', { config: { leakGuard: { timeout: LONG_TIMEOUT } } }, hang)
    app.get('/stream', { config: { leakGuard: { timeout: false } } }, async (request, reply) => {
      probe.start(id(request), request.scope.signal)
      const body = new PassThrough()
      body.write('a')
      setTimeout(() => body.end('b'), Number(param(request.query, 'ms') ?? 50))
      return reply.send(body)
    })
    app.get('/headers-then-hang', async (request, reply) => {
      probe.start(id(request), request.scope.signal)
      const body = new PassThrough()
      body.write('partial')
      return reply.send(body)
    })
    app.get('/context', async (request) => work.context(probe, id(request), request.scope))
    app.get('/context-off', async () => ({ current: currentSignal() !== undefined }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    const server = app.server
    const port = (server.address() as AddressInfo).port
    return {
      name: 'fastify',
      url: `http://127.0.0.1:${port}`,
      port,
      server,
      guard: app.leakGuard,
      probe,
      responses,
      close: async () => {
        server.closeAllConnections()
        await app.close()
      },
    }
  },
}

export const kits: AdapterKit[] = [expressKit, koaKit, fastifyKit]
