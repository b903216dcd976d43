import express from 'express'
import { setTimeout as sleep } from 'node:timers/promises'
import { leakGuard, leakGuardErrorHandler, withTimeout } from '@leak-guard/express'

const app = express()
app.use(leakGuard({ timeout: 1_000 })) // first: every request gets a deadline and `req.signal`
app.use(express.json())

app.get('/slow', async (req, res) => {
  // Stops as soon as the client leaves or the deadline passes; the client gets 503 + Retry-After.
  await sleep(10_000, undefined, { signal: req.signal })
  res.send('done')
})
app.get('/export', withTimeout(60_000), (_req, res) => {
  res.send('a long export')
})

app.use(leakGuardErrorHandler()) // after the routes: keeps late errors of answered requests quiet
app.listen(Number(process.env.PORT ?? 3000))
