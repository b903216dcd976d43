// One instance of the app behind nginx (see nginx.conf). Run two: PORT=3001 node app.mjs and
// PORT=3002 node app.mjs. On SIGTERM it drains: readiness turns 503, the server stops accepting,
// in-flight requests finish with `Connection: close`, idle keep-alive sockets from nginx close at
// once, requests nginx still sends on an open upstream connection get 503 + `Connection: close`
// (nginx retries them on the other instance: `proxy_next_upstream ... http_503`), and the process
// exits by itself once everything is closed.
import express from 'express'
import { createShutdown, hardenServer, leakGuard, leakGuardErrorHandler, readiness } from '@leak-guard/express'

const port = Number(process.env.PORT ?? 3001)
const work = Number(process.env.WORK_MS ?? 20)

const app = express()
const guard = leakGuard({ timeout: 5_000 })
app.use(guard)
app.get('/readyz', readiness(guard.guard))
app.get('/', async (req, res) => {
  // Simulated work that honours the request's signal.
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, work)
    req.signal.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(req.signal.reason)
    }, { once: true })
  })
  res.json({ instance: port, pid: process.pid })
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
