import { expect } from 'chai'
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import request from 'supertest'
import { createDispatcher, type Dispatcher } from '@leak-guard/core'
import { leakGuard as expressGuard } from '@leak-guard/express'
import { leakGuard as koaGuard } from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import { deferred } from './helpers.js'

/**
 * A handler that awaits `dispatcher.run()` lets `PoolFullError` / `PoolQueueTimeoutError` reach the
 * framework's own error path, which must answer 503 with the error's `Retry-After` header.
 */
interface App {
  name: string
  start(d: Dispatcher): Promise<{ agent: ReturnType<typeof request>; close(): Promise<void> }>
}

const apps: App[] = [
  {
    name: 'express',
    async start(d) {
      const app = express()
      // finalhandler logs every error to stderr outside the 'test' env.
      app.set('env', 'test')
      app.use(expressGuard())
      app.get('/work', async (_req, res) => {
        res.send(await d.run(async () => 'done'))
      })
      return { agent: request(app), close: async () => {} }
    },
  },
  {
    name: 'koa',
    async start(d) {
      const app = new Koa()
      app.use(koaGuard())
      app.use(async (ctx) => {
        ctx.body = await d.run(async () => 'done')
      })
      return { agent: request(app.callback()), close: async () => {} }
    },
  },
  {
    name: 'fastify',
    async start(d) {
      const app = Fastify()
      await app.register(fastifyGuard)
      app.get('/work', async () => d.run(async () => 'done'))
      await app.ready()
      return { agent: request(app.server), close: () => app.close() }
    },
  },
]

for (const kit of apps) {
  describe(`dispatcher errors over HTTP on ${kit.name}`, () => {
    let d: Dispatcher | undefined
    let close: (() => Promise<void>) | undefined
    let gate = deferred()
    afterEach(async () => {
      gate.resolve()
      await d?.destroy()
      await close?.()
      d = undefined
      close = undefined
      gate = deferred()
    })

    it('answers 503 with Retry-After when the pool is full', async () => {
      d = createDispatcher({ concurrency: 1, maxQueue: 0 })
      const held = d.run(() => gate.promise, { scope: null })
      const started = await kit.start(d)
      close = started.close
      const res = await started.agent.get('/work')
      expect(res.status).to.equal(503)
      expect(res.headers['retry-after']).to.match(/^\d+$/)
      gate.resolve()
      await held
      const ok = await started.agent.get('/work')
      expect(ok.status).to.equal(200)
      expect(ok.text).to.include('done')
    })

    it('answers 503 with Retry-After when the task waited past queueTimeout', async () => {
      d = createDispatcher({ concurrency: 1, queueTimeout: 30 })
      void d.run(() => gate.promise, { scope: null })
      const started = await kit.start(d)
      close = started.close
      const res = await started.agent.get('/work')
      expect(res.status).to.equal(503)
      expect(res.headers['retry-after']).to.match(/^\d+$/)
      expect(d.stats().rejected.queueTimeout).to.equal(1)
    })
  })
}
