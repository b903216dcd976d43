// One instance of the app behind nginx (see nginx.conf). Run two: PORT=3001 node app.mjs and
// PORT=3002 node app.mjs. On SIGTERM it drains for a proxy with upstream keep-alive
// (`idleConnections: 'serve'`): readiness turns 503, the server stops accepting (nginx's new
// connections are refused and it retries them on the other instance), in-flight requests finish with
// `Connection: close`, and each connection nginx still holds in its keep-alive cache serves one last
// request, answered with `Connection: close`, instead of being closed under a request nginx may be
// writing at that moment (nginx never resends a POST it already wrote). The process exits by itself
// once nginx has used or closed those connections (at the latest at `forceAfter`).
import express from 'express'
import { createShutdown, hardenServer, leakGuard, leakGuardErrorHandler, readiness } from '@leak-guard/express'

const port = Number(process.env.PORT ?? 3001)
const work = Number(process.env.WORK_MS ?? 20)
// ORDER_LOG=1 prints one JSON line per order taken (the test counts them: each order exactly once).
const orderLog = process.env.ORDER_LOG === '1'

/** Simulated work that honours the request's signal. */
function doWork(signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, work)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(signal.reason)
    }, { once: true })
  })
}

const app = express()
const guard = leakGuard({ timeout: 5_000 })
app.use(guard)
app.use(express.json())
app.get('/readyz', readiness(guard.guard))
app.get('/', async (req, res) => {
  await doWork(req.signal)
  res.json({ instance: port, pid: process.pid })
})
// Not idempotent: nginx must never send it twice, and never lose it.
app.post('/orders', async (req, res) => {
  await doWork(req.signal)
  if (orderLog) process.stdout.write(JSON.stringify({ event: 'order', id: req.body.id, pid: process.pid }) + '\n')
  res.status(201).json({ id: req.body.id, instance: port })
})
app.use(leakGuardErrorHandler())

const server = app.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ event: 'listening', port }))
})
// keepAliveTimeout (65 s) above nginx's upstream keepalive_timeout (60 s): nginx, not the app,
// closes idle upstream connections, so nginx never sends on a socket the app is closing.
hardenServer(server, { keepAliveTimeout: 65_000 })
const shutdown = createShutdown(server, {
  guard: guard.guard,
  // Serve the requests nginx sends on its cached upstream connections instead of closing those
  // connections or answering 503 (which nginx does not pass on to the other instance for a POST).
  idleConnections: 'serve',
  // Behind nginx with passive health checks there is nothing to poll readiness; behind a balancer
  // that polls /readyz, set this to a few probe intervals (e.g. 5_000).
  readinessDelay: Number(process.env.READINESS_DELAY ?? 0) || false,
  gracePeriod: 5_000,
  forceAfter: 8_000,
  handleSignals: true,
})
process.once('SIGTERM', () => {
  void shutdown.close().then((summary) => console.log(JSON.stringify({ event: 'summary', port, ...summary })))
})
