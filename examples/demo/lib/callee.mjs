// Incident 4's downstream service, run as a child process: the same service twice, unguarded and
// guarded (leak-guard on Express, local deadline 30 s), each behind a hop that does not cancel — a tiny
// proxy that, like a load balancer with `proxy_ignore_client_abort on`, a gateway or a service that does
// not propagate cancellation, keeps its upstream request going when its caller hangs up. So the only way
// the callee can learn that its caller gave up is the deadline the caller sent along.
//
// `GET /work?id=&ms=` works for `ms` milliseconds (stopping early only if its request's signal aborts)
// and timestamps the work; the demo reads the records over IPC (`stats`, `reset`).
import { createServer, request as httpRequest } from 'node:http'
import express from 'express'
import { leakGuard } from '@leak-guard/express'

const work = []

function build(guarded) {
  const app = express()
  if (guarded) app.use(leakGuard({ timeout: 30_000 }))
  app.get('/work', async (req, res) => {
    const item = { side: guarded ? 'guarded' : 'unguarded', id: String(req.query.id), startedAt: Date.now(), completedAt: undefined, abortedAt: undefined }
    work.push(item)
    const ms = Number(req.query.ms)
    const signal = guarded ? req.signal : undefined
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      signal?.addEventListener('abort', () => {
        clearTimeout(timer)
        resolve()
      }, { once: true })
    })
    if (signal?.aborted) {
      item.abortedAt = Date.now()
      return
    }
    item.completedAt = Date.now()
    res.json({ id: item.id, done: true })
  })
  return createServer(app)
}

/** A proxy to `port` that passes headers through and never cancels its upstream request. */
function hop(port) {
  return createServer((req, res) => {
    const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers)
      answer.pipe(res)
    })
    // Deliberately no `res.on('close', () => upstream.destroy())`: the caller leaving changes nothing.
    upstream.on('error', () => res.destroy())
    res.on('error', () => {})
    req.pipe(upstream)
  })
}

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)))
const services = { unguarded: build(false), guarded: build(true) }
const hops = {}
for (const side of ['unguarded', 'guarded']) {
  const port = await listen(services[side])
  hops[side] = `http://127.0.0.1:${await listen(hop(port))}`
}

process.on('message', (message) => {
  if (message?.type === 'stats') process.send({ id: message.id, work: work.filter((w) => w.side === message.side) })
  else if (message?.type === 'reset') {
    work.length = 0
    process.send({ id: message.id })
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ type: 'ready', hops })
