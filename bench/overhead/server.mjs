// One hello-world server for the overhead benchmark, run in its own child process:
//
//   node bench/overhead/server.mjs <framework> <variant>
//
// framework: express | koa | fastify
// variant:   bare | bare-signal | lg-nocontext | lg-default | lg-signal | lg-deadline | peer
//            (bare-signal: the bare handler creates one AbortController and reads its signal: the floor
//            any variant that hands out a real AbortSignal per request pays; lg-deadline: lg-signal
//            under a load whose requests carry `Connect-Timeout-Ms: 20000`, see run.mjs)
//
// It listens on 127.0.0.1:0 and talks to the parent over IPC:
//   -> { type: 'ready', port }                       once listening
//   <- { type: 'start' }  -> { type: 'started' }     snapshot of CPU time and the request counter
//   <- { type: 'stop' }   -> { type: 'stopped', cpuMicros, requests, heapUsed }
//                                                    CPU (user + system, all threads) and requests since 'start'
import http from 'node:http'

const [framework, variant] = process.argv.slice(2)
const BODY = 'hello world'
const TIMEOUT = 30_000

let requests = 0
const options = variant === 'lg-nocontext' ? { context: false, timeout: TIMEOUT } : { timeout: TIMEOUT }
const guarded = variant.startsWith('lg-')
const readSignal = variant === 'lg-signal' || variant === 'lg-deadline'
const bareSignal = variant === 'bare-signal'

async function express() {
  const { default: createApp } = await import('express')
  const app = createApp()
  let errorHandler
  if (guarded) {
    const { leakGuard, leakGuardErrorHandler } = await import('@leak-guard/express')
    app.use(leakGuard(options))
    errorHandler = leakGuardErrorHandler()
  } else if (variant === 'peer') {
    const { default: timeout } = await import('connect-timeout')
    app.use(timeout(TIMEOUT))
  }
  if (readSignal) {
    app.get('/', (req, res) => {
      requests++
      if (req.signal.aborted) return
      res.send(BODY)
    })
  } else if (variant === 'peer') {
    // connect-timeout has no signal; its per-request flag is the like-for-like read.
    app.get('/', (req, res) => {
      requests++
      if (req.timedout) return
      res.send(BODY)
    })
  } else if (bareSignal) {
    app.get('/', (req, res) => {
      requests++
      if (new AbortController().signal.aborted) return
      res.send(BODY)
    })
  } else {
    app.get('/', (req, res) => {
      requests++
      res.send(BODY)
    })
  }
  // Mounted as the README says; it is never reached by a request that succeeds.
  if (errorHandler !== undefined) app.use(errorHandler)
  return http.createServer(app)
}

async function koa() {
  const { default: Koa } = await import('koa')
  const app = new Koa()
  if (guarded) {
    const { leakGuard } = await import('@leak-guard/koa')
    app.use(leakGuard(options))
  } else if (variant === 'peer') {
    const { default: timeout } = await import('koa-timeout-v2')
    app.use(timeout(TIMEOUT))
  }
  if (readSignal) {
    app.use((ctx) => {
      requests++
      if (ctx.signal.aborted) return
      ctx.body = BODY
    })
  } else if (variant === 'peer') {
    // koa-timeout-v2 has no signal; it sets ctx.state.timeout when the deadline passes.
    app.use((ctx) => {
      requests++
      if (ctx.state.timeout) return
      ctx.body = BODY
    })
  } else if (bareSignal) {
    app.use((ctx) => {
      requests++
      if (new AbortController().signal.aborted) return
      ctx.body = BODY
    })
  } else {
    app.use((ctx) => {
      requests++
      ctx.body = BODY
    })
  }
  return http.createServer(app.callback())
}

async function fastify() {
  const { default: Fastify } = await import('fastify')
  // Fastify's handlerTimeout (5.8+) creates an AbortController and a timer per request, answers 503 on
  // expiry and aborts request.signal: the like-for-like peer of leak-guard's default with the signal read.
  const app = Fastify(variant === 'peer' ? { logger: false, handlerTimeout: TIMEOUT } : { logger: false })
  if (guarded) {
    const { leakGuard } = await import('@leak-guard/fastify')
    await app.register(leakGuard, options)
  }
  if (readSignal) {
    app.get('/', async (request) => {
      requests++
      if (request.scope.signal.aborted) return undefined
      return BODY
    })
  } else if (variant === 'peer') {
    app.get('/', async (request) => {
      requests++
      if (request.signal.aborted) return undefined
      return BODY
    })
  } else if (bareSignal) {
    app.get('/', async () => {
      requests++
      if (new AbortController().signal.aborted) return undefined
      return BODY
    })
  } else {
    app.get('/', async () => {
      requests++
      return BODY
    })
  }
  await app.ready()
  return app.server
}

const factories = { express, koa, fastify }
if (!(framework in factories) || !['bare', 'bare-signal', 'lg-nocontext', 'lg-default', 'lg-signal', 'lg-deadline', 'peer'].includes(variant)) {
  console.error(`usage: server.mjs <express|koa|fastify> <bare|bare-signal|lg-nocontext|lg-default|lg-signal|lg-deadline|peer>, got ${framework} ${variant}`)
  process.exit(2)
}
const server = await factories[framework]()
server.keepAliveTimeout = 10_000
server.listen(0, '127.0.0.1', () => {
  if (process.connected) process.send({ type: 'ready', port: server.address().port })
})

let cpu0
let count0 = 0
process.on('message', (message) => {
  if (message.type === 'start') {
    count0 = requests
    cpu0 = process.cpuUsage()
    process.send({ type: 'started' })
  } else if (message.type === 'stop') {
    const cpu = process.cpuUsage(cpu0)
    process.send({
      type: 'stopped',
      cpuMicros: cpu.user + cpu.system,
      requests: requests - count0,
      heapUsed: process.memoryUsage().heapUsed,
    })
  } else if (message.type === 'exit') {
    server.closeAllConnections?.()
    server.close(() => process.exit(0))
  }
})
process.on('disconnect', () => process.exit(0))
