import { once } from 'node:events'
import { connect, type ClientHttp2Session } from 'node:http2'
import Koa from 'koa'
import Router from '@koa/router'
import { bodyParser } from '@koa/bodyparser'
import Fastify from 'fastify'
import { expect } from 'chai'
import { createShutdown, type ShutdownSummary } from '@leak-guard/core'
import { kitsFor, type Harness } from '../conformance/adapters.js'

// HTTP/2 disconnects of the whole connection and graceful shutdown with GOAWAY, on Koa's node:http2
// server and Fastify's `http2: true`, through core's shutdown (Fastify: the plugin's, run by
// `guard.shutdown()`; Koa: createShutdown({ guard })).

function request(session: ClientHttp2Session, path: string, id: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, 'x-id': id })
    let status = 0
    let body = ''
    stream.setEncoding('utf8')
    stream.on('response', (headers) => (status = Number(headers[':status'])))
    stream.on('data', (chunk: string) => (body += chunk))
    stream.on('end', () => resolve({ status, body }))
    stream.on('error', reject)
    stream.end()
  })
}

for (const kit of kitsFor({ Koa, Router, bodyParser, Fastify }, { server: 'http2' })) {
  describe(`leakGuard() on ${kit.title}`, () => {
    let h: Harness | undefined
    const sessions: ClientHttp2Session[] = []
    const open = (): ClientHttp2Session => {
      const session = connect(`https://127.0.0.1:${h!.port}`, { rejectUnauthorized: false })
      session.on('error', () => {})
      sessions.push(session)
      return session
    }

    afterEach(async () => {
      for (const s of sessions.splice(0)) s.destroy()
      await h?.close()
      h = undefined
    })

    it('aborts with LG_ERR_CLIENT_CLOSED when the client destroys the whole session', async () => {
      h = await kit.start({ timeout: 5_000 })
      const session = open()
      const pending = request(session, '/hang', 's1').catch(() => undefined)
      await h.probe.started('s1')
      const destroyedAt = performance.now()
      session.destroy()
      const record = await h.probe.aborted('s1')
      expect(record.reason).to.equal('LG_ERR_CLIENT_CLOSED')
      expect(record.abortedAt! - destroyedAt).to.be.below(50)
      await pending
      await new Promise((resolve) => setTimeout(resolve, 10))
      expect(h.guard.size).to.equal(0)
      expect(h.guard.stats().ended['client-closed']).to.equal(1)
    })

    it('sends GOAWAY on shutdown, lets the in-flight stream finish and aborts what outlives the grace period', async () => {
      h = await kit.start({ timeout: 5_000, ...(kit.name === 'fastify' ? { shutdown: { gracePeriod: 300 } } : {}) } as never)
      const shutdown = kit.name === 'koa' ? createShutdown(h.server, { guard: h.guard, gracePeriod: 300 }) : undefined
      const session = open()
      const goaway = once(session, 'goaway')
      const finishing = request(session, '/slow?ms=100', 'g1')
      const hanging = request(session, '/hang', 'g2').catch((error: unknown) => error)
      await Promise.all([h.probe.started('g1'), h.probe.started('g2')])
      const closing: Promise<ShutdownSummary> = h.guard.shutdown()
      await goaway
      const reply = await finishing
      expect(reply.status).to.equal(200)
      expect(JSON.parse(reply.body)).to.deep.equal({ late: true })
      const record = await h.probe.aborted('g2', 2_000)
      expect(record.reason).to.equal('LG_ERR_SHUTDOWN')
      await hanging
      const summary = await closing
      // The stream that finished its 200 within the grace period is drained; the aborted one is not.
      expect(summary.drained).to.equal(1)
      expect(summary.aborted).to.equal(1)
      expect(summary.forced).to.equal(0)
      expect(h.guard.size).to.equal(0)
      shutdown?.dispose()
    })
  })
}
