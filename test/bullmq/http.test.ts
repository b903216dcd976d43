import { expect } from 'chai'
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { QueueEvents } from 'bullmq'
import { leakGuard as expressGuard } from '@leak-guard/express'
import { leakGuard as koaGuard } from '@leak-guard/koa'
import fastifyGuard from '@leak-guard/fastify'
import type { QueueDispatcher } from '@leak-guard/bullmq'
import { send } from '../helpers/http.js'
import { connection, epochNow, queueName, useRig, waitForEvent } from './helpers.js'

/** An app whose route `run()`s a 5 s job through the dispatcher, with a 300 ms request deadline. */
interface Kit {
  name: string
  listen(d: QueueDispatcher): Promise<{ port: number; close(): Promise<void> }>
}

async function listening(server: Server): Promise<number> {
  if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

const kits: Kit[] = [
  {
    name: 'express',
    async listen(d) {
      const app = express()
      app.set('env', 'test')
      app.use(expressGuard({ timeout: 300 }))
      app.get('/report', async (_req, res, next) => {
        try {
          res.send(await d.run('sleep', { ms: 5_000 }))
        } catch (error) {
          next(error)
        }
      })
      const server = app.listen(0, '127.0.0.1')
      return { port: await listening(server), close: () => closeServer(server) }
    },
  },
  {
    name: 'koa',
    async listen(d) {
      const app = new Koa()
      app.silent = true
      app.use(koaGuard({ timeout: 300 }))
      app.use(async (ctx) => {
        ctx.body = await d.run('sleep', { ms: 5_000 })
      })
      const server = app.listen(0, '127.0.0.1')
      return { port: await listening(server), close: () => closeServer(server) }
    },
  },
  {
    name: 'fastify',
    async listen(d) {
      const app = Fastify()
      await app.register(fastifyGuard, { timeout: 300 })
      app.get('/report', async () => d.run('sleep', { ms: 5_000 }))
      await app.listen({ port: 0, host: '127.0.0.1' })
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() }
    },
  },
]

describe('@leak-guard/bullmq over HTTP', function () {
  this.timeout(30_000)
  const rig = useRig()

  for (const kit of kits) {
    describe(`on ${kit.name}, when a request that run()s a 5 s job hits its 300 ms deadline`, () => {
      it('answers 503, the worker signal aborts, and the job fails cancelled instead of completing', async () => {
        const name = queueName(`http-${kit.name}`)
        const worker = await rig.worker(name)
        const { dispatcher } = rig.producer(name)
        const app = await kit.listen(dispatcher)
        rig.defer(app.close)

        const reply = await send(app.port, { path: '/report' })
        const answeredAt = epochNow()
        expect(reply.status).to.equal(503)

        const started = await waitForEvent(worker, (e) => e.event === 'start')
        const aborted = await waitForEvent(worker, (e) => e.event === 'abort' && e.id === started.id)
        // The job carries the deadline, so the worker's own timer and the producer's cancel race: either wins.
        expect(aborted.reason).to.be.oneOf(['LG_ERR_TIMEOUT', 'LG_ERR_JOB_CANCELLED'])
        // Causal and wide: the abort follows the answer, long before the job's 5 s. (Latency: bench/bullmq.)
        expect(aborted.at as number).to.be.below(answeredAt + 2_000)
        const failed = await waitForEvent(worker, (e) => e.event === 'failed' && e.id === started.id)
        expect(failed.reason).to.match(/^(LG_ERR_TIMEOUT: the job ran past its deadline|LG_ERR_JOB_CANCELLED: .*LG_ERR_TIMEOUT)/)
        expect(worker.events.some((e) => e.event === 'completed')).to.equal(false)
        // Not `removed: 0`: when the worker's own deadline timer fails the job first, the producer's cancel
        // may still find it (failed, not yet deleted) and remove it.
        expect(dispatcher.stats()).to.include({ pending: 0, completed: 0 })
      })
    })
  }

  describe('the unguarded control (plain queue.add + waitUntilFinished on Express)', () => {
    it('answers 503 too, but the job runs on to completion', async () => {
      const name = queueName('http-control')
      const worker = await rig.worker(name)
      const { queue } = rig.producer(name)
      const events = new QueueEvents(name, { connection: connection(rig.redis) })
      await events.waitUntilReady()
      const q = queue
      const app = express()
      app.set('env', 'test')
      app.use(expressGuard({ timeout: 300 }))
      app.get('/report', async (_req, res, next) => {
        try {
          const job = await q.add('sleep', { ms: 800 })
          res.send(await job.waitUntilFinished(events))
        } catch (error) {
          next(error)
        }
      })
      const server = app.listen(0, '127.0.0.1')
      const port = await listening(server)
      rig.defer(async () => {
        await closeServer(server)
        await events.close()
      })
      const reply = await send(port, { path: '/report' })
      expect(reply.status).to.equal(503)
      const started = await waitForEvent(worker, (e) => e.event === 'start')
      await waitForEvent(worker, (e) => e.event === 'completed' && e.id === started.id)
      expect(worker.events.some((e) => e.event === 'abort')).to.equal(false)
    })
  })
})
