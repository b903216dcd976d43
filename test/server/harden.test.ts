import { expect } from 'chai'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import { join } from 'node:path'
import { hardenServer } from '@leak-guard/core'
import { fixtures, sleep } from './helpers.js'

const tls = { key: readFileSync(join(fixtures, 'key.pem')), cert: readFileSync(join(fixtures, 'cert.pem')) }

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))
}

/** Opens a socket that sends half a request head and one more header line every 100 ms. */
function trickle(port: number): { closed: Promise<number>; stop(): void } {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.on('data', () => {})
  socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n')
  const timer = setInterval(() => socket.write(`X-Slow-${Math.random().toString(36).slice(2, 6)}: 1\r\n`), 100)
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => {
      clearInterval(timer)
      resolve(performance.now())
    }),
  )
  return {
    closed,
    stop: () => {
      clearInterval(timer)
      socket.destroy()
    },
  }
}

describe('hardenServer()', () => {
  const servers: net.Server[] = []
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      ;(server as http.Server).closeAllConnections?.()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('applies and returns safe defaults', () => {
    const server = http.createServer()
    const applied = hardenServer(server)
    expect(applied).to.deep.equal({
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 65_000,
      connectionsCheckingInterval: 500,
      maxRequestsPerSocket: false,
      maxHeadersCount: 100,
    })
    expect(server.headersTimeout).to.equal(10_000)
    expect(server.requestTimeout).to.equal(30_000)
    expect(server.keepAliveTimeout).to.equal(65_000)
    expect((server as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval).to.equal(500)
    expect(server.maxRequestsPerSocket).to.equal(0)
    expect(server.maxHeadersCount).to.equal(100)
    expect(Object.isFrozen(applied)).to.equal(true)
  })

  describe('when options break a rule', () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['headersTimeout above requestTimeout', { headersTimeout: 5_000, requestTimeout: 1_000 }],
      ['connectionsCheckingInterval above the header deadline', { headersTimeout: 1_000, connectionsCheckingInterval: 2_000 }],
      ['0 for a timeout (say false)', { headersTimeout: 0 }],
      ['false for keepAliveTimeout', { keepAliveTimeout: false }],
      ['an unknown option', { headerTimeout: 1_000 }],
      ['a non-integer', { requestTimeout: 1.5 }],
    ]
    for (const [label, options] of cases) {
      it(`throws LG_ERR_INVALID_OPTION for ${label}`, () => {
        expect(() => hardenServer(http.createServer(), options as never))
          .to.throw()
          .with.property('code', 'LG_ERR_INVALID_OPTION')
      })
    }
    it('throws LG_ERR_INVALID_OPTION for something that is not a server', () => {
      expect(() => hardenServer({} as never)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    })
    it('accepts false for headersTimeout and requestTimeout (Node: 0)', () => {
      const server = http.createServer()
      hardenServer(server, { headersTimeout: false, requestTimeout: false })
      expect(server.headersTimeout).to.equal(0)
      expect(server.requestTimeout).to.equal(0)
    })
  })

  it('hardens the servers of Express listen(), Koa listen(), fastify.server, https and http2', async () => {
    const app = express()
    const expressServer = app.listen(0)
    servers.push(expressServer)
    const koaServer = new Koa().listen(0)
    servers.push(koaServer)
    const fastify = Fastify()
    const httpsServer = https.createServer(tls)
    const h2Server = http2.createSecureServer({ ...tls, allowHTTP1: true })
    for (const server of [expressServer, koaServer, fastify.server, httpsServer, h2Server] as Array<http.Server>) {
      hardenServer(server, { headersTimeout: 4_000, requestTimeout: 8_000, keepAliveTimeout: 70_000 })
      expect(server.headersTimeout).to.equal(4_000)
      expect(server.requestTimeout).to.equal(8_000)
      expect(server.keepAliveTimeout).to.equal(70_000)
    }
    // Fastify's own defaults (requestTimeout 0 = none) are replaced.
    expect(fastify.server.requestTimeout).to.equal(8_000)
    await fastify.close()
  })

  describe('on a server that is already listening', () => {
    it('re-arms Node’s connection check so a trickling client is cut off within headersTimeout + 1 s', async () => {
      const server = http.createServer((_req, res) => res.end('ok'))
      servers.push(server)
      const port = await listen(server)
      hardenServer(server, { headersTimeout: 300, requestTimeout: 600, connectionsCheckingInterval: 100 })
      const started = performance.now()
      const slow = trickle(port)
      const closedAt = await Promise.race([slow.closed, sleep(3_000).then(() => Infinity)])
      slow.stop()
      expect(closedAt - started).to.be.below(300 + 1_000)
    })

    it('(why) setting the properties alone after listen() leaves Node’s 30 s check in place', async () => {
      const server = http.createServer((_req, res) => res.end('ok'))
      servers.push(server)
      const port = await listen(server)
      server.headersTimeout = 300
      server.requestTimeout = 600
      ;(server as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = 100
      const slow = trickle(port)
      const closedAt = await Promise.race([slow.closed, sleep(1_500).then(() => Infinity)])
      slow.stop()
      expect(closedAt).to.equal(Infinity)
    })

    it('enforces headersTimeout on an https server too', async () => {
      const server = https.createServer(tls, (_req, res) => res.end('ok'))
      servers.push(server)
      const port = await listen(server)
      hardenServer(server, { headersTimeout: 300, requestTimeout: 600, connectionsCheckingInterval: 100 })
      const { connect } = await import('node:tls')
      const socket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
      socket.on('error', () => {})
      socket.on('data', () => {})
      await new Promise((resolve) => socket.once('secureConnect', resolve))
      const started = performance.now()
      socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n')
      const closedAt = await Promise.race([new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now()))), sleep(3_000).then(() => Infinity)])
      socket.destroy()
      expect(closedAt - started).to.be.below(300 + 1_000)
    })
  })

  it('bounds idle keep-alive sockets by keepAliveTimeout', async () => {
    const server = http.createServer((_req, res) => res.end('ok'))
    servers.push(server)
    const port = await listen(server)
    hardenServer(server, { keepAliveTimeout: 200 })
    const socket = net.connect(port, '127.0.0.1')
    socket.on('data', () => {})
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
    const started = performance.now()
    const closedAt = await Promise.race([new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now()))), sleep(3_000).then(() => Infinity)])
    socket.destroy()
    // Node 24 adds a 1 s buffer (keepAliveTimeoutBuffer) on top of keepAliveTimeout.
    expect(closedAt - started).to.be.below(200 + 1_000 + 700)
  })
})
