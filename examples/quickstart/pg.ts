import express from 'express'
import pg from 'pg'
import { leakGuard, leakGuardErrorHandler } from '@leak-guard/express'
import { guardPool } from '@leak-guard/pg'

const app = express()
const middleware = leakGuard({ timeout: 1_000 })
app.use(middleware)

// Instrumented in place: hand the same pool to Drizzle (`drizzle({ client: pool })`),
// Kysely (`new PostgresDialect({ pool })`) or use it directly. Connection from PGHOST, PGPORT, ...
const pool = guardPool(new pg.Pool({ max: 10 }), { guard: middleware.guard })

app.get('/report', async (_req, res) => {
  // Cancelled in PostgreSQL at the 1 s deadline; the client gets 503 + Retry-After.
  const { rows } = await pool.query('SELECT pg_sleep(10) AS report')
  res.json(rows)
})

app.use(leakGuardErrorHandler())
app.listen(Number(process.env.PORT ?? 3000))
