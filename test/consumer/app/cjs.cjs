'use strict'
// Loaded from the scratch project through `require`: the CommonJS builds of the packed packages.
const { once } = require('node:events')
const { createServer } = require('node:http')
const express = require('express')
const Koa = require('koa')
const Fastify = require('fastify')
const { createGuard, currentSignal, LeakGuardError } = require('@leak-guard/core')
const { leakGuard: expressGuard } = require('@leak-guard/express')
const { leakGuard: koaGuard } = require('@leak-guard/koa')
const fastifyGuard = require('@leak-guard/fastify').default
const pg = require('pg')
const { guardPool } = require('@leak-guard/pg')

async function main() {
  async function get(server, path) {
    const { port } = server.address()
    const res = await fetch(`http://127.0.0.1:${port}${path}`)
    return res.json()
  }

  const results = { kind: 'cjs', guard: typeof createGuard().stats === 'function', errorBrand: typeof LeakGuardError === 'function' }
  const pool = new pg.Pool()
  results.pg = guardPool(pool, { guard: createGuard() }) === pool

  const app = express()
  app.use(expressGuard({ timeout: 1000 }))
  app.get('/', (req, res) => res.json({ signal: req.signal instanceof AbortSignal, current: currentSignal() === req.signal }))
  const s1 = createServer(app).listen(0, '127.0.0.1')
  await once(s1, 'listening')
  results.express = await get(s1, '/')
  s1.close()

  const k = new Koa()
  k.use(koaGuard({ timeout: 1000 }))
  k.use((ctx) => {
    ctx.body = { signal: ctx.signal instanceof AbortSignal, current: currentSignal() === ctx.signal }
  })
  const s2 = createServer(k.callback()).listen(0, '127.0.0.1')
  await once(s2, 'listening')
  results.koa = await get(s2, '/')
  s2.close()

  const f = Fastify()
  await f.register(fastifyGuard, { timeout: 1000 })
  f.get('/', async (request) => ({ signal: request.scope.signal instanceof AbortSignal, current: currentSignal() === request.scope.signal }))
  await f.listen({ port: 0, host: '127.0.0.1' })
  results.fastify = await get(f.server, '/')
  await f.close()

  console.log(JSON.stringify(results))
}
main().catch((error) => { console.error(error); process.exitCode = 1 })
