import { once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { createServer, type RequestListener, type Server } from 'node:http'
import { createSecureServer, type Http2SecureServer } from 'node:http2'
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
import { tlsPair } from '../http2/tls.js'

/** Per-route timeout of `/long`, in ms: longer than the default the suite gives the guard. */
export const LONG_TIMEOUT = 400

/**
 * The servers a cell runs on: `http` is `node:http`; `http2` is a `node:http2` secure server with
 * `allowHTTP1` (Fastify: `http2: true` + `https`), self-signed pair from test/http2/fixtures.
 */
export type ServerKind = 'http' | 'http2'

export interface Harness {
  name: string
  url: string
  port: number
  server: Server | Http2SecureServer
  guard: Guard
  probe: Probe
  /** Every response object the app handled, to check that no leak-guard listener stays on it. */
  responses: Set<NodeJS.EventEmitter>
  /** Lines the framework's own logger wrote at warn level or above (Fastify's pino; Express and Koa log to stderr). */
  logs: string[]
  close(): Promise<void>
}

export interface AdapterKit {
  name: 'express' | 'koa' | 'fastify'
  /** What the suite's describe() shows: framework, version and server kind when not the default cell. */
  title: string
  start(options?: GuardOptions): Promise<Harness>
  /** Creating the guard with `options` (throws, or rejects for Fastify's register). */
  create(options: unknown): Promise<unknown>
}

/**
 * The framework modules a cell runs on. Typed as the default cell's majors; a matrix cell passes its
 * pinned major's modules (`express@4`, `koa@2`, `fastify@4`), whose runtime API the fixtures share.
 */
export interface Frameworks {
  express: typeof express
  Koa: typeof Koa
  Router: typeof Router
  bodyParser: typeof bodyParser
  Fastify: typeof Fastify
}

/** The Express adapter's API the fixture uses: `@leak-guard/express`, or a stand-in for testing the suite. */
export type ExpressAdapter = Pick<typeof expressGuard, 'leakGuard' | 'withTimeout' | 'leakGuardErrorHandler'>

export interface KitOptions {
  /** @default 'http' */
  server?: ServerKind
  /** @default the `@leak-guard/express` module */
  expressAdapter?: ExpressAdapter
  /** Added to the kits' titles, e.g. `express 4.21.2`. */
  versions?: Partial<Record<AdapterKit['name'], string>>
}

/** A listening server plus a close() that destroys every connection first (HTTP/1, TLS, HTTP/2 sessions). */
interface Listening {
  server: Server | Http2SecureServer
  port: number
  scheme: 'http' | 'https'
  close(): Promise<void>
}

function track(server: Server | Http2SecureServer): Set<Socket> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  return sockets
}

async function serve(kind: ServerKind, handler: RequestListener): Promise<Listening> {
  const server: Server | Http2SecureServer =
    kind === 'http' ? createServer(handler) : createSecureServer({ ...tlsPair, allowHTTP1: true }, handler as never)
  const sockets = track(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    scheme: kind === 'http' ? 'http' : 'https',
    async close() {
      if (kind === 'http') (server as Server).closeAllConnections()
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function param(query: unknown, name: string): string | undefined {
  const value = (query as Record<string, unknown>)[name]
  return typeof value === 'string' ? value : undefined
}

function expressKit(fw: Frameworks['express'], kind: ServerKind, expressGuard: ExpressAdapter, title: string, version: string | undefined): AdapterKit {
  const express = fw
  // Express 4 ignores the promise a handler returns, so a rejection is unhandled unless the app passes
  // it to next() (as Express 4 apps do, by hand or with express-async-errors); Express 5 does that itself.
  const handles = version === undefined || Number.parseInt(version, 10) >= 5
  const route = (fn: (req: express.Request, res: express.Response) => Promise<void>): express.RequestHandler =>
    handles ? fn : (req, res, next) => void fn(req, res).catch(next)
  // Express 4's express.json() sets `req.body = {}` on requests without a body; Express 5 leaves it unset.
  const bodyOf = (req: express.Request): unknown =>
    req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined ? req.body : undefined
  return {
  name: 'express',
  title,
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
      res.json(work.ok(probe, id(req), req.signal, bodyOf(req)))
    }
    const slow = route(async (req, res) => {
      res.json(await work.slow(probe, id(req), req.signal, Number(param(req.query, 'ms') ?? 50), param(req.query, 'fail') === '1'))
    })
    const hang = route(async (req, res) => {
      res.json(await work.hang(probe, id(req), req.signal))
    })
    app.get('/ok', ok)
    app.post('/ok', ok)
    app.get('/slow', slow)
    app.post('/slow', slow)
    app.get('/hang', hang)
    app.post('/hang', hang)
    app.get('/long', expressGuard.withTimeout(LONG_TIMEOUT), slow)
    app.get('/hang-long', expressGuard.withTimeout(LONG_TIMEOUT), hang)
    app.get('/stream', expressGuard.withTimeout(false), route(async (req, res) => {
      probe.start(id(req), req.signal)
      res.write('a')
      await sleep(Number(param(req.query, 'ms') ?? 50))
      res.end('b')
    }))
    app.get('/headers-then-hang', route(async (req, res) => {
      probe.start(id(req), req.signal)
      res.write('partial')
      await once(req.signal, 'abort')
    }))
    const context = route(async (req, res) => {
      res.json(await work.context(probe, id(req), req.scope))
    })
    app.get('/context', context)
    app.post('/context', context)
    app.get('/context-off', (_req, res) => {
      res.json({ current: currentSignal() !== undefined })
    })
    app.get('/throwing', route(async (req, res) => {
      res.json(await work.throwing(probe, id(req), req.scope, param(req.query, 'hang') === '1'))
    }))
    app.get('/abortable', route(async (req, res) => {
      res.json(await work.abortable(probe, id(req), req.signal))
    }))
    app.use(expressGuard.leakGuardErrorHandler())
    const { server, port, scheme, close } = await serve(kind, app)
    return { name: 'express', url: `${scheme}://127.0.0.1:${port}`, port, server, guard: middleware.guard, probe, responses, logs: [], close }
  },
  }
}

function koaKit(fw: Pick<Frameworks, 'Koa' | 'Router' | 'bodyParser'>, kind: ServerKind, title: string): AdapterKit {
  const { Koa, Router, bodyParser } = fw
  return {
  name: 'koa',
  title,
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
    const context: Koa.Middleware = async (ctx) => {
      ctx.body = await work.context(probe, id(ctx), ctx.scope)
    }
    router.get('/context', context)
    router.post('/context', context)
    router.get('/context-off', (ctx) => {
      ctx.body = { current: currentSignal() !== undefined }
    })
    router.get('/throwing', async (ctx) => {
      ctx.body = await work.throwing(probe, id(ctx), ctx.scope, param(ctx.query, 'hang') === '1')
    })
    router.get('/abortable', async (ctx) => {
      ctx.body = await work.abortable(probe, id(ctx), ctx.signal)
    })
    app.use(router.routes())
    const { server, port, scheme, close } = await serve(kind, app.callback())
    return { name: 'koa', url: `${scheme}://127.0.0.1:${port}`, port, server, guard: middleware.guard, probe, responses, logs: [], close }
  },
  }
}

function fastifyKit(fw: Frameworks['Fastify'], kind: ServerKind, title: string): AdapterKit {
  // Fastify's own HTTP/2: `http2: true` with `https` and `allowHTTP1`; the instance API is the same.
  const Fastify = ((extra: Record<string, unknown> = {}) => fw({ ...extra, ...(kind === 'http' ? {} : { http2: true, https: { ...tlsPair, allowHTTP1: true } }) } as never)) as typeof fw
  return {
  name: 'fastify',
  title,
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
    const logs: string[] = []
    // Fastify's own logger at warn level, into `logs`: what a disconnect makes it print.
    const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => void logs.push(line) } } })
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
    const context = async (request: Req) => work.context(probe, id(request), request.scope)
    app.get('/context', context)
    app.post('/context', context)
    app.get('/context-off', async () => ({ current: currentSignal() !== undefined }))
    app.get('/throwing', async (request: Req) => work.throwing(probe, id(request), request.scope, param(request.query, 'hang') === '1'))
    app.get('/abortable', async (request: Req) => work.abortable(probe, id(request), request.scope.signal))
    const sockets = track(app.server)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const server = app.server
    const port = (server.address() as AddressInfo).port
    return {
      name: 'fastify',
      url: `${kind === 'http' ? 'http' : 'https'}://127.0.0.1:${port}`,
      port,
      server,
      guard: app.leakGuard,
      probe,
      responses,
      logs,
      close: async () => {
        if (kind === 'http') server.closeAllConnections()
        for (const socket of sockets) socket.destroy()
        await app.close()
      },
    }
  },
  }
}

/**
 * The kits of one matrix cell: one per framework given (Koa needs `Koa`, `Router` and `bodyParser`),
 * each building the same fixture app on that framework's module.
 */
export function kitsFor(frameworks: Partial<Frameworks>, options: KitOptions = {}): AdapterKit[] {
  const kind = options.server ?? 'http'
  const title = (name: AdapterKit['name']): string => {
    const version = options.versions?.[name]
    const extras = [version, kind === 'http2' ? 'on HTTP/2' : undefined].filter(Boolean)
    return extras.length ? `${name} (${extras.join(', ')})` : name
  }
  const kits: AdapterKit[] = []
  if (frameworks.express !== undefined) kits.push(expressKit(frameworks.express, kind, options.expressAdapter ?? expressGuard, title('express'), options.versions?.express))
  if (frameworks.Koa !== undefined) {
    const { Koa, Router, bodyParser } = frameworks
    if (Router === undefined || bodyParser === undefined) throw new TypeError('kitsFor(): Koa needs Router and bodyParser too')
    kits.push(koaKit({ Koa, Router, bodyParser }, kind, title('koa')))
  }
  if (frameworks.Fastify !== undefined) kits.push(fastifyKit(frameworks.Fastify, kind, title('fastify')))
  return kits
}

/** The default cell: Express 5, Koa 3, Fastify 5 from the test package, on `node:http`. */
export const kits: AdapterKit[] = kitsFor({ express, Koa, Router, bodyParser, Fastify })
