// Type-checked in the scratch project with moduleResolution nodenext and bundler: the published
// declarations must give req.signal, ctx.signal and request.scope their types.
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import { currentSignal, type RequestScope } from '@leak-guard/core'
import { leakGuard as expressGuard, withTimeout, leakGuardErrorHandler, type LeakGuardMiddleware } from '@leak-guard/express'
import { leakGuard as koaGuard } from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import pg from 'pg'
import { guardPool, type GuardPoolOptions } from '@leak-guard/pg'

declare function query(sql: string, options: { signal: AbortSignal }): Promise<unknown>

const app = express()
const mw: LeakGuardMiddleware = expressGuard({ timeout: 5_000 })
app.use(mw)
app.get('/users', withTimeout(10_000), async (req, res) => {
  const signal: AbortSignal = req.signal
  const scope: RequestScope = req.scope
  res.json({ rows: await query('select 1', { signal }), remaining: scope.remaining() })
})
app.use(leakGuardErrorHandler())
const inFlight: number = mw.guard.stats().inFlight
const pgOptions: GuardPoolOptions = { statementTimeout: 'deadline', cancel: true, guard: mw.guard }
export const pool: pg.Pool = guardPool(new pg.Pool(), pgOptions)

const koa = new Koa()
koa.use(koaGuard({ timeout: 5_000 }))
koa.use(async (ctx) => {
  const signal: AbortSignal = ctx.signal
  ctx.body = { rows: await query('select 1', { signal }), aborted: ctx.scope.aborted, current: currentSignal() === signal }
})

export async function start(): Promise<number> {
  const fastify = Fastify()
  await fastify.register(fastifyGuard, { timeout: 5_000 })
  fastify.get('/users', { config: { leakGuard: { timeout: 10_000 } } }, async (request) => {
    const signal: AbortSignal = request.scope.signal
    return { rows: await query('select 1', { signal }) }
  })
  return fastify.leakGuard.stats().started + inFlight
}
