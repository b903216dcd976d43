import { once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import Fastify from 'fastify'
import pg from 'pg'
import type { Guard, GuardOptions } from '@leak-guard/core'
import * as expressGuard from '@leak-guard/express'
import * as koaGuard from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import { usePostgres, type Postgres } from '../helpers/postgres.js'

export type Framework = 'express' | 'koa' | 'fastify'
export const frameworks: Framework[] = ['express', 'koa', 'fastify']

/** What a route runs against the pool; `tag` makes its SQL findable in pg_stat_activity. */
export type RouteWork = (pool: pg.Pool, tag: string) => Promise<unknown>

export interface App {
  guard: Guard
  server: Server
  port: number
  close(): Promise<void>
}

/** `SELECT pg_sleep(30)` with a tag comment, so a test finds its own query in pg_stat_activity. */
export function sleepQuery(tag: string, seconds = 30): string {
  if (!/^[a-z0-9-]+$/.test(tag)) throw new Error(`bad tag ${tag}`)
  return `SELECT pg_sleep(${seconds}) /* ${tag} */`
}

export const sleepRoute: RouteWork = (pool, tag) => pool.query(sleepQuery(tag))

function track(server: Server): () => Promise<void> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return async () => {
    for (const socket of sockets) socket.destroy()
    if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

/** A server of `framework` with leak-guard (`options`) and `GET /work/:tag` running `work`. */
export async function startApp(framework: Framework, options: GuardOptions, pool: pg.Pool, work: RouteWork = sleepRoute): Promise<App> {
  if (framework === 'express') {
    const app = express()
    const middleware = expressGuard.leakGuard(options)
    app.use(middleware)
    app.get('/work/:tag', async (req, res) => {
      const result = await work(pool, String(req.params.tag))
      res.json({ ok: true, result: (result as { rows?: unknown } | undefined)?.rows ?? null })
    })
    app.use(expressGuard.leakGuardErrorHandler())
    const server = createServer(app)
    const port = await listen(server)
    return { guard: middleware.guard, server, port, close: track(server) }
  }
  if (framework === 'koa') {
    const app = new Koa()
    const router = new Router()
    const middleware = koaGuard.leakGuard(options)
    app.use(middleware)
    router.get('/work/:tag', async (ctx) => {
      const result = await work(pool, String(ctx.params.tag))
      ctx.body = { ok: true, result: (result as { rows?: unknown } | undefined)?.rows ?? null }
    })
    app.use(router.routes())
    app.silent = true
    const server = createServer(app.callback())
    const port = await listen(server)
    return { guard: middleware.guard, server, port, close: track(server) }
  }
  const app = Fastify()
  await app.register(fastifyGuard, options)
  app.get<{ Params: { tag: string } }>('/work/:tag', async (request) => {
    const result = await work(pool, request.params.tag)
    return { ok: true, result: (result as { rows?: unknown } | undefined)?.rows ?? null }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const server = app.server
  const close = track(server)
  return {
    guard: app.leakGuard,
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      await close()
      await app.close()
    },
  }
}

export function poolFor(db: Postgres, extra: pg.PoolConfig = {}): pg.Pool {
  return new pg.Pool({ host: db.host, port: db.port, user: db.user, database: db.database, max: 4, ...extra })
}

/** A plain client that watches pg_stat_activity. */
export async function monitor(db: Postgres): Promise<pg.Client> {
  const client = new pg.Client({ host: db.host, port: db.port, user: db.user, database: db.database })
  client.on('error', () => {}) // the cluster stops under it when a test fails before ending it
  await client.connect()
  return client
}

/** Backends running a statement that contains `tag`, other than the monitor itself. */
export async function activeWith(client: pg.Client, tag: string): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'",
    [`/* ${tag} */`],
  )
  return rows[0]!.n
}

/** Polls until `tag`'s statement runs (it started) or `ms` passed; returns whether it runs. */
export async function waitActive(client: pg.Client, tag: string, ms = 5_000): Promise<boolean> {
  const end = performance.now() + ms
  while (performance.now() < end) {
    if ((await activeWith(client, tag)) > 0) return true
    await sleep(10)
  }
  return false
}

/** Polls until no backend runs `tag`'s statement; resolves with the milliseconds that took, or -1. */
export async function waitGone(client: pg.Client, tag: string, ms = 2_000): Promise<number> {
  const start = performance.now()
  while (performance.now() - start < ms) {
    if ((await activeWith(client, tag)) === 0) return performance.now() - start
    await sleep(5)
  }
  return -1
}

/**
 * A bare `node:http` server on core (no framework): each request gets a scope from `guard` (its
 * timeout: the `x-timeout` header, `false` for none, else the guard's) and runs `handler` inside it.
 * Its answer to a rejection: 503 with the error's code for leak-guard errors, 500 otherwise.
 */
export async function serveCore(guard: Guard, handler: (req: IncomingMessage) => Promise<unknown>): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const header = req.headers['x-timeout']
    const timeout = header === undefined ? undefined : header === 'false' ? false : Number(header)
    const scope = guard.begin(req, res, undefined, undefined, timeout)
    guard.enter(scope, () => {
      handler(req).then(
        (value) => {
          if (!res.headersSent) res.end(JSON.stringify(value ?? null))
        },
        (error: { code?: string; statusCode?: number }) => {
          if (res.headersSent) return
          res.statusCode = error.statusCode ?? 500
          res.end(JSON.stringify({ code: error.code ?? null }))
        },
      )
    })
  })
  const port = await listen(server)
  return { port, close: track(server) }
}

/** Polls until no backend is idle in a transaction; resolves with how many still are after `ms`. */
export async function idleInTransaction(client: pg.Client, ms = 2_000): Promise<number> {
  const end = performance.now() + ms
  for (;;) {
    const { rows } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'")
    if (rows[0]!.n === 0 || performance.now() > end) return rows[0]!.n
    await sleep(10)
  }
}

export interface PgTest {
  readonly db: Postgres
  /** A plain client on pg_stat_activity, open for the whole file. */
  readonly watch: pg.Client
  /** Run (last first) after each test: pools, servers. */
  readonly cleanup: Array<() => unknown>
}

/** The hooks every pg test file shares: a throwaway cluster, a monitor client, per-test cleanup. */
export function usePgTest(): PgTest {
  const db = usePostgres()
  const cleanup: Array<() => unknown> = []
  let watch: pg.Client | undefined
  before(async () => {
    watch = await monitor(db)
  })
  after(async () => {
    await watch?.end()
  })
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
  })
  return {
    db,
    cleanup,
    get watch() {
      return watch!
    },
  }
}
