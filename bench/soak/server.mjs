// Server of the memory soak, run in a child process with --expose-gc:
//
//   node --expose-gc bench/soak/server.mjs <express|koa|fastify>
//
// leak-guard with its defaults except `timeout: 20`. Every handler reads the request's signal.
//   GET /ok          answers at once                                              → 200
//   GET /timeout     waits 60 ms on a timer bound to the signal, then writes late → 503 at 20 ms
//   GET /disconnect  per-route timeout 5 s, waits 1 s on a timer bound to the signal; the client
//                    destroys its socket after a few ms                            → ClientClosedError
//
// IPC: -> { type: 'ready', port }; <- { type: 'measure', label } -> { type: 'measured', label, ... }
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

const framework = process.argv[2]
const TIMEOUT = 20
const SLOW = 60
const HANG = 1_000
const DISCONNECT_TIMEOUT = 5_000

if (typeof globalThis.gc !== 'function') {
  console.error('bench/soak/server.mjs needs --expose-gc')
  process.exit(2)
}

/** Waits on a timer that the signal cancels; an abort is expected here, so it only ends the wait. */
async function wait(ms, signal) {
  try {
    await sleep(ms, undefined, { signal })
  } catch (error) {
    if (error?.name !== 'AbortError') throw error
  }
}

let guard
async function express() {
  const { default: createApp } = await import('express')
  const { leakGuard, leakGuardErrorHandler, withTimeout } = await import('@leak-guard/express')
  const app = createApp()
  const mw = leakGuard({ timeout: TIMEOUT })
  guard = mw.guard
  app.use(mw)
  app.get('/ok', (req, res) => {
    if (req.signal.aborted) return
    res.send('ok')
  })
  app.get('/timeout', async (req, res) => {
    await wait(SLOW, req.signal)
    // Late write after the 503: leak-guard drops it.
    res.send('late')
  })
  app.get('/disconnect', withTimeout(DISCONNECT_TIMEOUT), async (req, res) => {
    await wait(HANG, req.signal)
    if (!req.signal.aborted) res.send('not disconnected')
  })
  app.use(leakGuardErrorHandler())
  return http.createServer(app)
}

async function koa() {
  const { default: Koa } = await import('koa')
  const { leakGuard } = await import('@leak-guard/koa')
  const app = new Koa()
  const mw = leakGuard({ timeout: TIMEOUT })
  guard = mw.guard
  app.use(mw)
  app.use(async (ctx) => {
    const signal = ctx.signal
    if (ctx.path === '/ok') {
      if (!signal.aborted) ctx.body = 'ok'
    } else if (ctx.path === '/timeout') {
      await wait(SLOW, signal)
      ctx.body = 'late'
    } else if (ctx.path === '/disconnect') {
      ctx.scope.setTimeout(DISCONNECT_TIMEOUT)
      await wait(HANG, signal)
      if (!signal.aborted) ctx.body = 'not disconnected'
    }
  })
  return http.createServer(app.callback())
}

async function fastify() {
  const { default: Fastify } = await import('fastify')
  const { leakGuard } = await import('@leak-guard/fastify')
  const app = Fastify({ logger: false })
  await app.register(leakGuard, { timeout: TIMEOUT })
  guard = app.leakGuard
  app.get('/ok', async (request) => {
    if (request.scope.signal.aborted) return undefined
    return 'ok'
  })
  app.get('/timeout', async (request) => {
    await wait(SLOW, request.scope.signal)
    return 'late'
  })
  app.get('/disconnect', { config: { leakGuard: { timeout: DISCONNECT_TIMEOUT } } }, async (request) => {
    await wait(HANG, request.scope.signal)
    return 'not disconnected'
  })
  await app.ready()
  return app.server
}

const factories = { express, koa, fastify }
if (!(framework in factories)) {
  console.error(`usage: server.mjs <express|koa|fastify>, got ${framework}`)
  process.exit(2)
}
const server = await factories[framework]()
server.keepAliveTimeout = 30_000

const sockets = new Set()
server.on('connection', (socket) => {
  sockets.add(socket)
  socket.once('close', () => sockets.delete(socket))
})

function listenerCount(emitter) {
  let n = 0
  for (const name of emitter.eventNames()) n += emitter.listenerCount(name)
  return n
}

function countBy(items) {
  const out = {}
  for (const item of items) out[item] = (out[item] ?? 0) + 1
  return out
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

async function settle() {
  // Requests still in flight (a disconnect whose close has not been seen yet) end within a few ticks.
  const until = Date.now() + 5_000
  while (guard.size > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10))
  for (let i = 0; i < 4; i++) {
    globalThis.gc()
    await tick()
  }
}

async function measure(label, full) {
  if (full) await settle()
  else globalThis.gc()
  const perSocket = [...sockets].map(listenerCount)
  const resources = countBy(process.getActiveResourcesInfo())
  return {
    type: 'measured',
    label,
    heapUsed: process.memoryUsage().heapUsed,
    cpuMicros: (({ user, system }) => user + system)(process.cpuUsage()),
    guardSize: guard.size,
    stats: guard.stats(),
    resources,
    sockets: sockets.size,
    socketListenersMax: perSocket.length === 0 ? 0 : Math.max(...perSocket),
    socketListenersTotal: perSocket.reduce((a, b) => a + b, 0),
    serverListeners: listenerCount(server),
    processListeners: listenerCount(process),
  }
}

process.on('message', async (message) => {
  if (message.type === 'measure') process.send(await measure(message.label, message.full !== false))
  else if (message.type === 'exit') {
    server.closeAllConnections?.()
    server.close(() => process.exit(0))
  }
})
process.on('disconnect', () => process.exit(0))

server.listen(0, '127.0.0.1', () => process.send({ type: 'ready', port: server.address().port }))
