import { expect } from 'chai'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import Fastify from 'fastify'
import { createDispatcher, createGuard, createShutdown, createThreadPool, hardenServer } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'
import * as expressGuard from '@leak-guard/express'
import * as koaGuard from '@leak-guard/koa'
import fastifyGuard, { readiness as fastifyReadiness } from '@leak-guard/fastify'

const TOO_LONG = 2 ** 31
const worker = fileURLToPath(new URL('../dispatch/fixtures/worker.mjs', import.meta.url))

function code(fn: () => unknown): { code?: string; option?: string; message?: string } {
  try {
    fn()
  } catch (error) {
    return error as { code?: string; option?: string }
  }
  return {}
}

describe('option edges', () => {
  describe('a millisecond option a timer cannot hold (> 2,147,483,647)', () => {
    const cases: Array<[string, string, () => unknown]> = [
      ['createGuard({ timeout })', 'timeout', () => createGuard({ timeout: TOO_LONG })],
      ['createGuard({ leakGracePeriod })', 'leakGracePeriod', () => createGuard({ leakGracePeriod: TOO_LONG })],
      ['express withTimeout()', 'timeout', () => expressGuard.withTimeout(TOO_LONG)],
      ['koa withTimeout()', 'timeout', () => koaGuard.withTimeout(TOO_LONG)],
      ['scope.setTimeout()', 'timeout', () => {
        const guard = createGuard({ timeout: false })
        const server = http.createServer()
        const req = new http.IncomingMessage(null as never)
        const scope = guard.begin(req, new http.ServerResponse(req))
        server.close()
        scope.setTimeout(TOO_LONG)
      }],
      ['createDispatcher({ queueTimeout })', 'queueTimeout', () => createDispatcher({ queueTimeout: TOO_LONG })],
      ['createDispatcher({ closeTimeout })', 'closeTimeout', () => createDispatcher({ closeTimeout: TOO_LONG })],
      ['createThreadPool({ idleTimeout })', 'idleTimeout', () => createThreadPool({ filename: worker, idleTimeout: TOO_LONG })],
      ['createHttpClient({ timeout })', 'timeout', () => createHttpClient({ timeout: TOO_LONG })],
      ['createShutdown({ gracePeriod })', 'gracePeriod', () => createShutdown(http.createServer(), { gracePeriod: TOO_LONG })],
      ['createShutdown({ forceAfter })', 'forceAfter', () => createShutdown(http.createServer(), { forceAfter: TOO_LONG })],
      ['createShutdown({ readinessDelay })', 'readinessDelay', () => createShutdown(http.createServer(), { readinessDelay: TOO_LONG, gracePeriod: 1_000 })],
      ['hardenServer({ keepAliveTimeout })', 'keepAliveTimeout', () => hardenServer(http.createServer(), { keepAliveTimeout: TOO_LONG })],
      ['hardenServer({ headersTimeout })', 'headersTimeout', () => hardenServer(http.createServer(), { headersTimeout: TOO_LONG })],
    ]
    for (const [label, option, fn] of cases) {
      it(`${label} rejects it with LG_ERR_INVALID_OPTION at creation`, () => {
        const e = code(fn)
        expect(e.code).to.equal('LG_ERR_INVALID_OPTION')
        expect(e.option).to.equal(option)
      })
    }

    it('Fastify route config { leakGuard: { timeout } } rejects it when the route is declared', async () => {
      const app = Fastify()
      await app.register(fastifyGuard, { timeout: 1_000 })
      let error: { code?: string } = {}
      try {
        app.get('/x', { config: { leakGuard: { timeout: TOO_LONG } } }, async () => 'x')
        await app.ready()
      } catch (caught) {
        error = caught as { code?: string }
      } finally {
        await app.close().catch(() => {})
      }
      expect(error.code).to.equal('LG_ERR_INVALID_OPTION')
    })

    it('accepts the largest value a timer holds (2,147,483,647)', () => {
      expect(createGuard({ timeout: TOO_LONG - 1 }).options.timeout).to.equal(TOO_LONG - 1)
    })

    it('(why) withTimeout(2 ** 31) would answer at once: Node fires an overflowing timer after 1 ms', async () => {
      const warnings: string[] = []
      const onWarning = (w: Error): void => void warnings.push(w.name)
      process.on('warning', onWarning)
      const started = performance.now()
      await new Promise((resolve) => setTimeout(resolve, TOO_LONG))
      process.off('warning', onWarning)
      expect(performance.now() - started).to.be.below(1_000)
      expect(warnings).to.include('TimeoutOverflowWarning')
    })
  })

  describe('createThreadPool({ filename })', () => {
    it('rejects a relative path with LG_ERR_INVALID_OPTION', () => {
      const e = code(() => createThreadPool({ filename: './test/dispatch/fixtures/worker.mjs' }))
      expect(e).to.include({ code: 'LG_ERR_INVALID_OPTION', option: 'filename' })
    })

    it('reports a file that does not exist at creation, not at the first run()', () => {
      const e = code(() => createThreadPool({ filename: `${worker}.missing.mjs` }))
      expect(e).to.include({ code: 'LG_ERR_INVALID_OPTION', option: 'filename' })
      const url = code(() => createThreadPool({ filename: new URL(`file://${worker}.missing.mjs`) }))
      expect(url).to.include({ code: 'LG_ERR_INVALID_OPTION', option: 'filename' })
    })
  })

  describe('readiness(x) in every adapter', () => {
    const mw = expressGuard.leakGuard()
    const cases: Array<[string, () => unknown]> = [
      ['express readiness(middleware)', () => expressGuard.readiness(mw as never)],
      ['koa readiness(middleware)', () => koaGuard.readiness(koaGuard.leakGuard() as never)],
      ['fastify readiness(undefined)', () => fastifyReadiness(undefined as never)],
      ['fastify readiness({})', () => fastifyReadiness({} as never)],
    ]
    for (const [label, fn] of cases) {
      it(`${label} throws LG_ERR_INVALID_OPTION instead of answering 200 through the shutdown`, () => {
        expect(code(fn)).to.include({ code: 'LG_ERR_INVALID_OPTION' })
      })
    }

    it('accepts a guard and a shutdown', () => {
      expect(expressGuard.readiness(mw.guard)).to.be.a('function')
      expect(koaGuard.readiness(createShutdown(http.createServer()))).to.be.a('function')
    })
  })

  describe('wiring mistakes: one process warning with a code, once per app', () => {
    let server: http.Server | undefined
    const warnings: Array<{ name: string; code?: string }> = []
    const onWarning = (w: Error & { code?: string }): void => void warnings.push({ name: w.name, code: w.code })
    beforeEach(() => {
      warnings.length = 0
      process.on('warning', onWarning)
    })
    afterEach(async () => {
      process.off('warning', onWarning)
      server?.closeAllConnections()
      if (server?.listening) await new Promise((resolve) => server!.close(resolve))
      server = undefined
    })

    async function hit(listener: http.RequestListener, paths: string[]): Promise<void> {
      server = http.createServer(listener).listen(0, '127.0.0.1')
      await once(server, 'listening')
      const { port } = server.address() as AddressInfo
      for (const path of paths) await (await fetch(`http://127.0.0.1:${port}${path}`)).arrayBuffer()
      await new Promise((resolve) => setImmediate(resolve)) // warnings are emitted on the next tick
    }

    const codes = (): Array<string | undefined> => warnings.filter((w) => w.name === 'LeakGuardWarning').map((w) => w.code)

    it('express: leakGuard() mounted after the routes', async () => {
      const app = express()
      const seen: unknown[] = []
      app.get('/a', (req, res) => {
        seen.push(req.signal)
        res.send('a')
      })
      app.use(expressGuard.leakGuard())
      app.use((_req, res) => void res.status(404).end())
      await hit(app, ['/missing', '/a', '/a', '/missing'])
      expect(seen).to.deep.equal([undefined, undefined])
      expect(codes()).to.deep.equal(['LG_WARN_MOUNTED_AFTER_ROUTES'])
    })

    it('express: two leakGuard() with different options on one request', async () => {
      const app = express()
      app.use(expressGuard.leakGuard({ timeout: 1_000 }))
      app.use(expressGuard.leakGuard({ timeout: 5_000 }))
      app.get('/a', (_req, res) => void res.send('a'))
      await hit(app, ['/a', '/a'])
      expect(codes()).to.deep.equal(['LG_WARN_TWO_GUARDS'])
    })

    it('express: the same options twice (app and sub-app) warn nothing; mounted first warns nothing', async () => {
      const app = express()
      const sub = express()
      app.use(expressGuard.leakGuard({ timeout: 1_000 }))
      sub.use(expressGuard.leakGuard({ timeout: 1_000 }))
      sub.get('/a', (req, res) => void res.send(String(req.signal.aborted)))
      app.use('/sub', sub)
      await hit(app, ['/sub/a', '/sub/a'])
      expect(codes()).to.deep.equal([])
    })

    it('koa: leakGuard() mounted after the router', async () => {
      const app = new Koa()
      const router = new Router()
      const seen: unknown[] = []
      router.get('/a', async (ctx, next) => {
        seen.push(ctx.signal)
        ctx.body = 'a'
        await next()
      })
      app.use(router.routes())
      app.use(koaGuard.leakGuard())
      await hit(app.callback(), ['/a', '/a'])
      expect(seen).to.deep.equal([undefined, undefined])
      expect(codes()).to.deep.equal(['LG_WARN_MOUNTED_AFTER_ROUTES'])
    })

    it('koa: two leakGuard() with different options on one request', async () => {
      const app = new Koa()
      app.use(koaGuard.leakGuard({ timeout: 1_000 }))
      app.use(koaGuard.leakGuard({ timeout: 5_000 }))
      app.use((ctx) => {
        ctx.body = 'a'
      })
      await hit(app.callback(), ['/a', '/a'])
      expect(codes()).to.deep.equal(['LG_WARN_TWO_GUARDS'])
    })
  })
})
