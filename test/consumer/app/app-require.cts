// The same through `require` (a .cts file under nodenext resolves the packages' `require` condition).
import express = require('express')
import core = require('@leak-guard/core')
import expressAdapter = require('@leak-guard/express')
import koaAdapter = require('@leak-guard/koa')
import fastifyAdapter = require('@leak-guard/fastify')
import pg = require('pg')
import pgAdapter = require('@leak-guard/pg')

const app = express()
app.use(expressAdapter.leakGuard({ timeout: 5_000 }))
app.get('/', (req, res) => {
  const signal: AbortSignal = req.signal
  res.json({ aborted: signal.aborted, current: core.currentSignal() === signal })
})
export const koaMiddleware = koaAdapter.leakGuard()
export const plugin = fastifyAdapter.default
export const pool: pg.Pool = pgAdapter.guardPool(new pg.Pool(), { statementTimeout: false })
