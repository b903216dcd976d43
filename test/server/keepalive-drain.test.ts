import { expect } from 'chai'
import { once } from 'node:events'
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import { createGuard, createShutdown, type Guard, type ShutdownOptions } from '@leak-guard/core'
import * as expressGuard from '@leak-guard/express'
import * as koaGuard from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import { tlsPair } from '../http2/tls.js'

// The peer scenario of http-terminator and stoppable: response 1 is being written, with
// `Connection: keep-alive` already sent, when the shutdown starts. The client's keep-alive agent
// (maxSockets 1) has request 2 queued and sends it on the same socket the moment response 1 ends.
// That request must be answered, never reset: `'serve'` serves it with `Connection: close` while the
// grace period runs, `'close'` answers 503 + `Connection: close` + `Retry-After`.

type Mode = NonNullable<ShutdownOptions['idleConnections']>

interface Running {
  port: number
  scheme: 'http' | 'https'
  /** Ends response 1. */
  release(): void
  /** Starts the shutdown; resolves when it finished. */
  shutdown(): Promise<unknown>
  listening(): boolean
  /** POST bodies the app handled. */
  handled: string[]
  close(): Promise<void>
}

const GRACE = { gracePeriod: 2_000, forceAfter: 3_000 }

function streamGate(): { wait: Promise<void>; release(): void } {
  let release!: () => void
  const wait = new Promise<void>((resolve) => (release = resolve))
  return { wait, release }
}

async function readBody(req: IncomingMessage): Promise<string> {
  let data = ''
  for await (const chunk of req) data += String(chunk)
  return data
}

/** Listens on `server` and drains it with createShutdown(): the Running of a node:http(s), Express or Koa app. */
async function drained(server: http.Server | https.Server, scheme: 'http' | 'https', guard: Guard, mode: Mode, gate: { release(): void }, handled: string[], times: Pick<ShutdownOptions, 'gracePeriod' | 'forceAfter'> = GRACE): Promise<Running> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const shutdown = createShutdown(server, { guard, idleConnections: mode, ...times })
  return {
    port: (server.address() as AddressInfo).port,
    scheme,
    release: gate.release,
    shutdown: () => shutdown.close(),
    listening: () => server.listening,
    handled,
    async close() {
      shutdown.force()
      shutdown.dispose()
      server.closeAllConnections()
      if (server.listening) await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** A bare node:http / node:https server with a guard and createShutdown(). */
async function plain(scheme: 'http' | 'https', mode: Mode, times: Pick<ShutdownOptions, 'gracePeriod' | 'forceAfter'> = GRACE): Promise<Running> {
  const guard = createGuard({ timeout: 5_000 })
  const gate = streamGate()
  const handled: string[] = []
  const listener: http.RequestListener = (req, res) => {
    guard.begin(req, res)
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('a')
      void gate.wait.then(() => res.end('b'))
      return
    }
    void readBody(req).then((body) => {
      handled.push(body)
      res.end('ok')
    })
  }
  const server = scheme === 'http' ? http.createServer(listener) : https.createServer(tlsPair, listener)
  return drained(server, scheme, guard, mode, gate, handled, times)
}

async function onExpress(mode: Mode): Promise<Running> {
  const gate = streamGate()
  const handled: string[] = []
  const app = express()
  const middleware = expressGuard.leakGuard({ timeout: 5_000 })
  app.use(middleware)
  app.use(express.text({ type: '*/*' }))
  app.get('/stream', (_req, res) => {
    res.type('text').write('a')
    void gate.wait.then(() => res.end('b'))
  })
  app.post('/orders', (req, res) => {
    handled.push(String(req.body))
    res.send('ok')
  })
  return drained(http.createServer(app), 'http', middleware.guard, mode, gate, handled)
}

async function onKoa(mode: Mode): Promise<Running> {
  const gate = streamGate()
  const handled: string[] = []
  const app = new Koa()
  const middleware = koaGuard.leakGuard({ timeout: 5_000 })
  app.use(middleware)
  app.use(async (ctx) => {
    if (ctx.path === '/stream') {
      const body = new PassThrough()
      ctx.type = 'text'
      ctx.body = body
      body.write('a')
      void gate.wait.then(() => body.end('b'))
      return
    }
    handled.push(await readBody(ctx.req))
    ctx.body = 'ok'
  })
  return drained(http.createServer(app.callback()), 'http', middleware.guard, mode, gate, handled)
}

async function onFastify(mode: Mode): Promise<Running> {
  const gate = streamGate()
  const handled: string[] = []
  // Fastify answers requests that arrive while it closes with its own 503 unless told not to; 'serve'
  // needs it off (packages/fastify/README.md).
  const app = Fastify({ return503OnClosing: mode === 'close' })
  await app.register(fastifyGuard, { timeout: 5_000, shutdown: { idleConnections: mode, ...GRACE } })
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body))
  app.get('/stream', async (_request, reply) => {
    const body = new PassThrough()
    body.write('a')
    void gate.wait.then(() => body.end('b'))
    return reply.type('text/plain').send(body)
  })
  app.post('/orders', async (request) => {
    handled.push(String(request.body))
    return 'ok'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  let closing: Promise<unknown> | undefined
  return {
    port: (app.server.address() as AddressInfo).port,
    scheme: 'http',
    release: gate.release,
    shutdown: () => (closing ??= app.close()),
    listening: () => app.server.listening,
    handled,
    async close() {
      app.server.closeAllConnections()
      await (closing ?? app.close())
    },
  }
}

const kinds: Array<[string, (mode: Mode) => Promise<Running>]> = [
  ['node:http', (mode) => plain('http', mode)],
  ['node:https', (mode) => plain('https', mode)],
  ['express', onExpress],
  ['koa', onKoa],
  ['fastify', onFastify],
]

interface Outcome {
  status?: number
  connection?: string
  retryAfter?: string
  body?: string
  error?: string
  /** Sent on the socket of response 1. */
  reused?: boolean
}

function post(agent: http.Agent, r: Running, body: string, previous: object): Promise<Outcome> {
  return new Promise((resolve) => {
    const request = (r.scheme === 'http' ? http : https).request(
      { host: '127.0.0.1', port: r.port, method: 'POST', path: '/orders', agent, rejectUnauthorized: false, headers: { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let data = ''
        res.setEncoding('utf8').on('data', (d: string) => (data += d))
        res.on('end', () =>
          resolve({ status: res.statusCode, connection: String(res.headers.connection), retryAfter: res.headers['retry-after'] as string | undefined, body: data, reused: request.socket === previous }),
        )
        res.on('error', (error) => resolve({ error: (error as NodeJS.ErrnoException).code ?? error.message }))
      },
    )
    request.on('error', (error) => resolve({ error: (error as NodeJS.ErrnoException).code ?? error.message }))
    request.end(body)
  })
}

/** One round: response 1 mid-write at shutdown, request 2 queued on the same keep-alive socket. */
async function round(start: (mode: Mode) => Promise<Running>, mode: Mode, i: number): Promise<{ first: string; second: Outcome; handled: string[] }> {
  const r = await start(mode)
  const agent = new (r.scheme === 'http' ? http : https).Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false } as https.AgentOptions)
  try {
    const first = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = (r.scheme === 'http' ? http : https).get({ host: '127.0.0.1', port: r.port, path: '/stream', agent, rejectUnauthorized: false }, resolve)
      request.on('error', reject)
    })
    expect(first.headers.connection).to.equal('keep-alive')
    let firstBody = ''
    first.setEncoding('utf8').on('data', (d: string) => (firstBody += d))
    const firstEnded = once(first, 'end')
    const shutdown = r.shutdown()
    while (r.listening()) await sleep(1) // the drain has begun
    const second = post(agent, r, `order-${i}`, first.socket) // queued: goes out on the same socket as soon as response 1 ends
    r.release()
    await firstEnded
    const outcome = await second
    await shutdown
    return { first: firstBody, second: outcome, handled: r.handled }
  } finally {
    agent.destroy()
    await r.close()
  }
}

const ROUNDS = 20

describe('drain with a keep-alive request queued behind a response mid-write at shutdown', function () {
  this.timeout(60_000)
  for (const [name, start] of kinds) {
    describe(name, () => {
      it(`'serve': serves request 2 on the reused socket with Connection: close, ${ROUNDS} of ${ROUNDS}, no reset`, async () => {
        const outcomes: Outcome[] = []
        for (let i = 0; i < ROUNDS; i++) {
          const { first, second, handled } = await round(start, 'serve', i)
          expect(first).to.equal('ab')
          outcomes.push(second)
          if (second.status === 200) expect(handled).to.deep.equal([`order-${i}`])
        }
        expect(outcomes.filter((o) => o.error !== undefined).map((o) => o.error)).to.deep.equal([])
        for (const o of outcomes) expect(o).to.include({ status: 200, connection: 'close', body: 'ok', reused: true })
      })

      it(`'close': answers request 2 with 503 + Connection: close + Retry-After, ${ROUNDS} of ${ROUNDS}, no reset, the app never runs it`, async () => {
        const outcomes: Outcome[] = []
        for (let i = 0; i < ROUNDS; i++) {
          const { first, second, handled } = await round(start, 'close', i)
          expect(first).to.equal('ab')
          expect(handled).to.deep.equal([])
          outcomes.push(second)
        }
        expect(outcomes.filter((o) => o.error !== undefined).map((o) => o.error)).to.deep.equal([])
        for (const o of outcomes) expect(o).to.include({ status: 503, connection: 'close', retryAfter: '1', reused: true })
      })
    })
  }
})

describe("drain ('close') after a response that promised keep-alive, when no request follows", () => {
  it('keeps the socket open for a request in transit, then closes it at the end of the grace period (not forced)', async () => {
    const r = await plain('http', 'close', { gracePeriod: 300, forceAfter: 2_000 })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const first = await new Promise<IncomingMessage>((resolve) => http.get({ host: '127.0.0.1', port: r.port, path: '/stream', agent }, resolve))
      first.resume()
      const socket = first.socket
      const closed = once(socket, 'close').then(() => performance.now())
      const started = performance.now()
      const shutdown = r.shutdown() as Promise<{ forced: number; drained: number }>
      r.release()
      await once(first, 'end')
      await sleep(100)
      expect(socket.destroyed, 'closed right after response 1').to.equal(false)
      const summary = await shutdown
      expect((await closed) - started).to.be.within(250, 1_500)
      expect(summary).to.include({ forced: 0, drained: 1 })
    } finally {
      agent.destroy()
      await r.close()
    }
  })
})
