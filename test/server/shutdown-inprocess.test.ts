import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import { createGuard, createShutdown, type GuardOptions } from '@leak-guard/core'
import { leakGuard as fastifyLeakGuard } from '@leak-guard/fastify'
import Fastify from 'fastify'
import { RawClient, fixtures, headerOf, sleep, statusOf } from './helpers.js'

const cert = { key: readFileSync(join(fixtures, 'key.pem')), cert: readFileSync(join(fixtures, 'cert.pem')) }

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))
}

function timeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
}

describe('createShutdown() in process', () => {
  const cleanup: Array<() => unknown> = []
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
  })

  describe('options', () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['forceAfter not above gracePeriod', { gracePeriod: 1_000, forceAfter: 1_000 }],
      ['readinessDelay not below gracePeriod', { gracePeriod: 1_000, readinessDelay: 1_000 }],
      ['0 for gracePeriod', { gracePeriod: 0 }],
      ['a guard that is not a guard', { guard: {} }],
      ['an unknown option', { grace: 1 }],
      ['an idleConnections that is not a mode', { idleConnections: 'keep' }],
      ['idleConnections: true', { idleConnections: true }],
    ]
    for (const [label, options] of cases) {
      it(`throws LG_ERR_INVALID_OPTION for ${label}`, () => {
        expect(() => createShutdown(http.createServer(), options as never))
          .to.throw()
          .with.property('code', 'LG_ERR_INVALID_OPTION')
      })
    }
  })

  it('removes every listener and timer it added, and the signal handlers', async () => {
    const server = http.createServer((_req, res) => res.end('ok'))
    await listen(server)
    const before = {
      connection: server.listenerCount('connection'),
      request: server.listenerCount('request'),
      close: server.listenerCount('close'),
      sigterm: process.listenerCount('SIGTERM'),
      sigint: process.listenerCount('SIGINT'),
      timeouts: timeouts(),
    }
    const shutdown = createShutdown(server, { gracePeriod: 200, forceAfter: 400, handleSignals: true })
    expect(process.listenerCount('SIGTERM')).to.equal(before.sigterm + 1)
    const c = new RawClient((server.address() as net.AddressInfo).port)
    cleanup.push(() => c.destroy())
    c.get('/')
    await c.responses(1)
    const summary = await shutdown.close()
    expect(summary.forced).to.equal(0)
    expect(server.listening).to.equal(false)
    expect(server.listenerCount('connection')).to.equal(before.connection)
    expect(server.listenerCount('request')).to.equal(before.request)
    expect(server.listenerCount('close')).to.equal(before.close)
    expect(process.listenerCount('SIGTERM')).to.equal(before.sigterm)
    expect(process.listenerCount('SIGINT')).to.equal(before.sigint)
    expect(timeouts()).to.equal(before.timeouts)
    // close() again returns the same summary.
    expect(await shutdown.close()).to.equal(summary)
  })

  it('dispose() uninstalls the signal handlers without shutting down', async () => {
    const server = http.createServer()
    const sigterm = process.listenerCount('SIGTERM')
    const connection = server.listenerCount('connection')
    const shutdown = createShutdown(server, { handleSignals: true })
    expect(server.listenerCount('connection')).to.equal(connection + 1)
    shutdown.dispose()
    expect(process.listenerCount('SIGTERM')).to.equal(sigterm)
    expect(server.listenerCount('connection')).to.equal(connection)
  })

  it('aborts at gracePeriod, forces at forceAfter, closes registered resources and reports it', async () => {
    const guard = createGuard({ timeout: false })
    let resourceClosed = false
    guard.register({ close: async () => void (resourceClosed = true) })
    let signalReason: string | undefined
    const server = http.createServer((req, res) => {
      const scope = guard.begin(req, res)
      if (req.url === '/stream') {
        // Headers already sent: at the grace period the response is destroyed.
        res.write('a')
        scope.onAbort((reason) => void (signalReason = reason.code))
        return
      }
      // Ignores its signal and never answers.
    })
    const port = await listen(server)
    const shutdown = createShutdown(server, { guard, gracePeriod: 150, forceAfter: 400 })
    const hang = new RawClient(port)
    const stream = new RawClient(port)
    cleanup.push(() => hang.destroy(), () => stream.destroy())
    hang.get('/hang')
    stream.get('/stream')
    await sleep(50)
    const started = performance.now()
    const summary = await shutdown.close()
    const took = performance.now() - started
    expect(summary.aborted).to.equal(2)
    expect(signalReason).to.equal('LG_ERR_SHUTDOWN')
    expect(statusOf((await hang.responses(1))[0])).to.equal(503)
    expect(resourceClosed).to.equal(true)
    expect(summary.resources).to.equal(1)
    expect(took).to.be.below(400 + 500)
    await hang.closed
    await stream.closed
  })

  it('destroys a connection nothing aborts at forceAfter', async () => {
    const server = http.createServer(() => {
      // No guard: nothing aborts this handler at the grace period.
    })
    const port = await listen(server)
    const shutdown = createShutdown(server, { gracePeriod: 100, forceAfter: 300 })
    const c = new RawClient(port)
    cleanup.push(() => c.destroy())
    c.get('/')
    await sleep(50)
    const started = performance.now()
    const summary = await shutdown.close()
    expect(summary.forced).to.equal(1)
    expect(performance.now() - started).to.be.within(250, 300 + 500)
    await c.closed
  })

  it('drains an https server: in-flight answered with Connection: close, idle TLS socket closed at once', async () => {
    const server = https.createServer(cert, (req, res) => {
      setTimeout(() => res.end('done'), req.url === '/slow' ? 200 : 0)
    })
    const port = await listen(server)
    const shutdown = createShutdown(server, { gracePeriod: 1_000, forceAfter: 2_000 })
    const open = (): tls.TLSSocket => {
      const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
      s.setEncoding('utf8')
      s.on('error', () => {})
      cleanup.push(() => s.destroy())
      return s
    }
    const idle = open()
    let idleData = ''
    idle.on('data', (d: string) => (idleData += d))
    idle.write('GET /fast HTTP/1.1\r\nHost: localhost\r\n\r\n')
    const busy = open()
    let busyData = ''
    busy.on('data', (d: string) => (busyData += d))
    busy.write('GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n')
    while (!idleData.includes('done')) await sleep(5)
    const idleClosed = new Promise<number>((resolve) => idle.once('close', () => resolve(performance.now())))
    const busyClosed = new Promise<void>((resolve) => busy.once('close', () => resolve()))
    const started = performance.now()
    const summary = await shutdown.close()
    expect((await idleClosed) - started).to.be.below(100)
    await busyClosed
    expect(statusOf(busyData)).to.equal(200)
    expect(headerOf(busyData, 'connection')).to.equal('close')
    expect(summary).to.include({ drained: 1, forced: 0 })
  })

  it('sends GOAWAY to HTTP/2 sessions and lets their open streams finish', async () => {
    let received = false
    const server = http2.createSecureServer({ ...cert, allowHTTP1: true }, (req, res) => {
      received = true
      setTimeout(() => res.end('done'), req.url === '/slow' ? 200 : 0)
    })
    const port = await listen(server)
    const shutdown = createShutdown(server, { gracePeriod: 1_000, forceAfter: 2_000 })
    const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false })
    cleanup.push(() => session.destroy())
    session.on('error', () => {})
    let goaway = false
    session.on('goaway', () => (goaway = true))
    const stream = session.request({ ':path': '/slow' })
    let body = ''
    let status = 0
    stream.setEncoding('utf8')
    stream.on('response', (headers) => (status = headers[':status'] as number))
    stream.on('data', (d: string) => (body += d))
    const ended = new Promise((resolve) => stream.once('close', resolve))
    // The stream must be open on the server before GOAWAY, or it is refused (a loaded machine can
    // take longer than any fixed sleep for the TLS handshake).
    while (!received) await sleep(5)
    const summary = await shutdown.close()
    await ended
    expect(goaway).to.equal(true)
    expect(status).to.equal(200)
    expect(body).to.equal('done')
    expect(summary.drained).to.equal(1)
    expect(summary.forced).to.equal(0)
    expect(server.listening).to.equal(false)
  })

  describe("with idleConnections: 'serve' (behind a keep-alive proxy)", () => {
    function post(c: RawClient, id: number): void {
      const body = JSON.stringify({ id })
      c.socket.write(`POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    }

    /** Shutdown began: the listener is closed, idle `c` is still open, and one POST on it is served with `Connection: close`. */
    async function expectLastRequestServed(server: net.Server, c: RawClient, handled: number[], id: number): Promise<void> {
      await sleep(50)
      expect(server.listening).to.equal(false)
      expect(c.closedAt).to.equal(undefined)
      post(c, id)
      const [reply] = await c.responses(1)
      expect(statusOf(reply)).to.equal(200)
      expect(headerOf(reply, 'connection')).to.equal('close')
      expect(handled).to.deep.equal([id])
    }

    async function start(options: Record<string, unknown>, guardOptions: GuardOptions = {}) {
      const guard = createGuard({ timeout: false, ...guardOptions })
      const handled: number[] = []
      const server = http.createServer((req, res) => {
        guard.begin(req, res)
        let data = ''
        req.setEncoding('utf8').on('data', (d: string) => (data += d))
        req.on('end', () => {
          if (data !== '') handled.push((JSON.parse(data) as { id: number }).id)
          setTimeout(() => res.end('ok'), 20)
        })
      })
      const port = await listen(server)
      const shutdown = createShutdown(server, { guard, ...options })
      cleanup.push(() => shutdown.dispose(), () => new Promise((resolve) => server.close(resolve)))
      const open = async (): Promise<RawClient> => {
        const c = new RawClient(port)
        cleanup.push(() => c.destroy())
        c.get('/')
        await c.responses(1)
        c.data = ''
        return c
      }
      return { server, shutdown, handled, open }
    }

    it('keeps an idle kept-alive socket open and serves the next request on it with Connection: close', async () => {
      const { server, shutdown, handled, open } = await start({ idleConnections: 'serve', gracePeriod: 1_000, forceAfter: 2_000 })
      const c = await open()
      const closing = shutdown.close()
      await expectLastRequestServed(server, c, handled, 7)
      await c.closed
      const summary = await closing
      expect(summary).to.include({ drained: 1, rejected: 0, forced: 0 })
      // Node's server.close() closes idle connections since v19: the drain shadows that, then gives it back.
      expect(Object.hasOwn(server, 'closeIdleConnections')).to.equal(false)
    })

    it('closes a socket never used again at forceAfter without counting it as forced', async () => {
      const { shutdown, open } = await start({ idleConnections: 'serve', gracePeriod: 100, forceAfter: 300 })
      const c = await open()
      const started = performance.now()
      const summary = await shutdown.close()
      expect((await c.closed) - started).to.be.within(250, 300 + 500)
      expect(summary).to.include({ drained: 0, rejected: 0, forced: 0 })
    })

    for (const [label, guardOptions, retryAfter, body] of [
      ['the defaults', {}, '1', '{"statusCode":503,"code":"LG_ERR_SHUTDOWN","error":"Service Unavailable","message":"Server is shutting down"}'],
      ['the guard\'s timeoutBody and retryAfter', { timeoutBody: { error: 'busy' }, retryAfter: 30 }, '30', '{"error":"busy"}'],
      ['retryAfter: false and a text timeoutBody', { timeoutBody: 'come back later', retryAfter: false }, undefined, 'come back later'],
    ] as const) {
      it(`answers 503 + Connection: close once the grace period ran out, without running the app, with ${label}`, async () => {
        const { shutdown, handled, open } = await start({ idleConnections: 'serve', gracePeriod: 100, forceAfter: 1_000 }, guardOptions)
        const c = await open()
        const closing = shutdown.close()
        await sleep(200)
        post(c, 8)
        const [reply] = await c.responses(1)
        expect(statusOf(reply)).to.equal(503)
        expect(headerOf(reply, 'connection')).to.equal('close')
        expect(headerOf(reply, 'retry-after')).to.equal(retryAfter)
        expect(reply!.slice(reply!.indexOf('\r\n\r\n') + 4)).to.equal(body)
        expect(handled).to.deep.equal([])
        expect((await closing).rejected).to.equal(1)
      })
    }

    it('reaches Fastify through the plugin\'s shutdown options (with return503OnClosing: false)', async () => {
      const app = Fastify({ return503OnClosing: false })
      await app.register(fastifyLeakGuard, { timeout: false, shutdown: { idleConnections: 'serve', gracePeriod: 1_000, forceAfter: 2_000 } })
      const handled: number[] = []
      app.post('/orders', async (request) => {
        await sleep(20)
        handled.push((request.body as { id: number }).id)
        return 'ok'
      })
      app.get('/', async () => 'ok')
      await app.listen({ port: 0, host: '127.0.0.1' })
      cleanup.push(() => app.close())
      const c = new RawClient((app.server.address() as net.AddressInfo).port)
      cleanup.push(() => c.destroy())
      c.get('/')
      await c.responses(1)
      c.data = ''
      const closing = app.close()
      await expectLastRequestServed(app.server, c, handled, 9)
      const started = performance.now()
      await closing
      expect(performance.now() - started).to.be.below(500)
    })

    it("by default ('close') closes the idle socket at once instead", async () => {
      const { shutdown, open } = await start({ gracePeriod: 1_000, forceAfter: 2_000 })
      const c = await open()
      const started = performance.now()
      const summary = await shutdown.close()
      expect((await c.closed) - started).to.be.below(100)
      expect(summary).to.include({ drained: 0, forced: 0 })
    })
  })

  it('guard.shutdown() runs the attached drain', async () => {
    const guard = createGuard({ timeout: false })
    const server = http.createServer((_req, res) => res.end('ok'))
    await listen(server)
    createShutdown(server, { guard, gracePeriod: 200, forceAfter: 400 })
    const summary = await guard.shutdown()
    expect(server.listening).to.equal(false)
    expect(guard.closing).to.equal(true)
    expect(summary.forced).to.equal(0)
  })
})
