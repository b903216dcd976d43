import { expect } from 'chai'
import express from 'express'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import type { Queue } from 'bullmq'
import { leakGuard as expressGuard } from '@leak-guard/express'
import { createQueueDispatcher, createQueueWorker, type QueueDispatcher } from '@leak-guard/bullmq'
import { send } from '../helpers/http.js'
import type { ChildApp } from '../server/helpers.js'
import { queueName, useRig, waitForEvent } from './helpers.js'

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function listen(app: express.Express): Promise<{ server: Server; port: number }> {
  const server = app.listen(0, '127.0.0.1')
  await new Promise<void>((resolve) => server.once('listening', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

describe('@leak-guard/bullmq', function () {
  this.timeout(30_000)
  const rig = useRig()

  async function setup(label: string, env: Record<string, string> = {}): Promise<{ worker: ChildApp; queue: Queue; d: QueueDispatcher }> {
    const name = queueName(label)
    const worker = await rig.worker(name, env)
    const { queue, dispatcher } = rig.producer(name)
    return { worker, queue, d: dispatcher }
  }

  /** Listens on a free port; closed after the test. */
  async function serve(app: express.Express): Promise<number> {
    const { server, port } = await listen(app)
    rig.defer(async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })
    return port
  }

  describe('createQueueDispatcher() and createQueueWorker()', () => {
    it('reject bad options at creation with LG_ERR_INVALID_OPTION', () => {
      const q = { add() {}, toKey() {} } as unknown as Queue
      expect(() => createQueueDispatcher({ queue: q, maxWaiting: -1 })).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
      expect(() => createQueueDispatcher({ queue: q, timeout: 0 })).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
      expect(() => createQueueDispatcher({ queue: q, maxWaitng: 5 } as never)).to.throw().with.property('option', 'maxWaitng')
      expect(() => createQueueDispatcher({ queue: {} as Queue })).to.throw().with.property('option', 'queue')
      expect(() => createQueueWorker('q', 'nope' as never, { connection: {} })).to.throw().with.property('option', 'processor')
      expect(() => createQueueWorker('q', async () => 1, { connection: {}, closeTimeout: 0 })).to.throw().with.property('option', 'closeTimeout')
    })
  })

  describe('run()', () => {
    it('resolves with the result the worker process returned', async () => {
      const { d } = await setup('result')
      expect(await d.run('echo', { n: 42 }, { scope: null })).to.deep.equal({ n: 42 })
      expect(d.stats()).to.include({ pending: 0, tracked: 0, completed: 1 })
    })

    it('cancels an active job on the worker process when its signal aborts (cross-process, through Redis)', async () => {
      const { worker, d } = await setup('signal')
      const controller = new AbortController()
      const result = d.run('sleep', { ms: 5_000 }, { signal: controller.signal, scope: null })
      const started = await waitForEvent(worker, (e) => e.event === 'start')
      const reason = new Error('caller gave up')
      controller.abort(reason)
      try {
        await result
        expect.fail('run() resolved')
      } catch (error) {
        expect(error).to.equal(reason)
      }
      const aborted = await waitForEvent(worker, (e) => e.event === 'abort' && e.id === started.id)
      expect(aborted.reason).to.equal('LG_ERR_JOB_CANCELLED')
      const failed = await waitForEvent(worker, (e) => e.event === 'failed' && e.id === started.id)
      expect(failed.reason).to.match(/^LG_ERR_JOB_CANCELLED: /)
      expect(worker.events.some((e) => e.event === 'completed')).to.equal(false)
      expect(d.stats()).to.include({ cancelled: 1, removed: 0, pending: 0 })
    })

    it('cancels the active job of a request whose client disconnects (LG_ERR_CLIENT_CLOSED crosses to the worker)', async () => {
      const { worker, d } = await setup('client-closed')
      const app = express()
      app.set('env', 'test')
      app.use(expressGuard({ timeout: 10_000 }))
      let rejection: unknown
      app.get('/report', async (_req, res) => {
        try {
          res.send(await d.run('sleep', { ms: 5_000 }))
        } catch (error) {
          rejection = error
        }
      })
      const socket = connect(await serve(app), '127.0.0.1')
      socket.on('error', () => {})
      socket.write('GET /report HTTP/1.1\r\nHost: x\r\n\r\n')
      const job = await waitForEvent(worker, (e) => e.event === 'start')
      socket.destroy()
      const failed = await waitForEvent(worker, (e) => e.event === 'failed' && e.id === job.id)
      expect(failed.reason).to.match(/^LG_ERR_JOB_CANCELLED: .*LG_ERR_CLIENT_CLOSED/)
      expect(worker.events.find((e) => e.event === 'abort')?.reason).to.equal('LG_ERR_JOB_CANCELLED')
      expect(rejection).to.have.property('code', 'LG_ERR_CLIENT_CLOSED')
    })

    it('removes a job queued behind a busy worker when its request ends: the processor is never called', async () => {
      const { worker, queue, d } = await setup('queued')
      const busy = d.run('sleep', { ms: 1_500 }, { scope: null })
      await waitForEvent(worker, (e) => e.event === 'start')
      const app = express()
      app.set('env', 'test')
      app.use(expressGuard({ timeout: 300 }))
      app.get('/report', async (_req, res, next) => {
        try {
          res.send(await d.run('echo', { queued: true }))
        } catch (error) {
          next(error)
        }
      })
      const reply = await send(await serve(app), { path: '/report' })
      expect(reply.status).to.equal(503)
      expect(await busy).to.equal('done')
      // The worker is free now: had the job not been removed, it would start at once.
      await sleep(500)
      const starts = worker.events.filter((e) => e.event === 'start')
      expect(starts).to.have.length(1)
      expect(d.stats()).to.include({ removed: 1, cancelled: 0, pending: 0, tracked: 0 })
      expect(await queue.getJobCountByTypes('wait', 'active', 'delayed', 'prioritized')).to.equal(0)
    })

    it('rejects pending calls with LG_ERR_SHUTDOWN on close(), cancels their jobs, and refuses new ones', async () => {
      const { worker, d } = await setup('close')
      const result = d.run('sleep', { ms: 5_000 }, { scope: null })
      const outcome = result.then(
        () => expect.fail('run() resolved'),
        (error: unknown) => expect(error).to.have.property('code', 'LG_ERR_SHUTDOWN'),
      )
      const started = await waitForEvent(worker, (e) => e.event === 'start')
      await d.close()
      await outcome
      await waitForEvent(worker, (e) => e.event === 'abort' && e.id === started.id)
      await d.run('echo', {}, { scope: null }).then(
        () => expect.fail('run() resolved'),
        (error: unknown) => expect(error).to.have.property('code', 'LG_ERR_POOL_CLOSED'),
      )
    })
  })

  describe('admission', () => {
    it('rejects at once with LG_ERR_POOL_FULL and Retry-After once maxWaiting jobs wait', async () => {
      const { queue, dispatcher } = rig.producer(queueName('admission'), { maxWaiting: 2 })
      await dispatcher.enqueue('echo', {})
      await dispatcher.enqueue('echo', {})
      const refused = await dispatcher.enqueue('echo', {}).catch((error: unknown) => error)
      expect(refused).to.have.property('code', 'LG_ERR_POOL_FULL')
      expect((refused as { headers: Record<string, string> }).headers['Retry-After']).to.match(/^\d+$/)
      await dispatcher.run('echo', {}, { scope: null }).then(
        () => expect.fail('run() resolved'),
        (error: unknown) => expect(error).to.have.property('code', 'LG_ERR_POOL_FULL'),
      )
      expect(await queue.getWaitingCount()).to.equal(2)
      expect(dispatcher.stats().rejected).to.equal(2)
    })
  })

  describe('deadlines on the worker', () => {
    it('fails a job whose deadline passed before a worker took it with LG_ERR_TIMEOUT, without calling the processor', async () => {
      const { worker, d } = await setup('expired')
      const busy = d.run('sleep', { ms: 800 }, { scope: null })
      await waitForEvent(worker, (e) => e.event === 'start')
      // enqueue(): not cancelled by the producer, so only the worker's own check can stop it.
      const job = await d.enqueue('echo', { late: true }, { timeout: 100 })
      await busy
      const failed = await waitForEvent(worker, (e) => e.event === 'failed' && e.id === job.id)
      expect(failed.reason).to.match(/^LG_ERR_TIMEOUT: /)
      expect(worker.events.filter((e) => e.event === 'start')).to.have.length(1)
    })

    it('aborts the processor signal at the deadline the job carries', async () => {
      const { worker, d } = await setup('deadline')
      const job = await d.enqueue('sleep', { ms: 5_000 }, { timeout: 300 })
      const aborted = await waitForEvent(worker, (e) => e.event === 'abort' && e.id === job.id)
      expect(aborted.reason).to.equal('LG_ERR_TIMEOUT')
      const failed = await waitForEvent(worker, (e) => e.event === 'failed' && e.id === job.id)
      expect(failed.reason).to.match(/^LG_ERR_TIMEOUT: /)
    })
  })

  describe('enqueue()', () => {
    it('is not cancelled when its request ends', async () => {
      const { worker, d } = await setup('enqueue')
      const app = express()
      app.set('env', 'test')
      app.use(expressGuard({ timeout: 5_000 }))
      app.get('/start', async (_req, res) => {
        const job = await d.enqueue('sleep', { ms: 400 })
        res.send(job.id)
      })
      const reply = await send(await serve(app), { path: '/start' })
      expect(reply.status).to.equal(200)
      await waitForEvent(worker, (e) => e.event === 'completed' && e.id === reply.body)
      expect(worker.events.some((e) => e.event === 'abort')).to.equal(false)
    })
  })

  describe('a run() job still running after its request ended', () => {
    it('is reported as a leak of kind job on the producer guard too', async () => {
      const { worker, d } = await setup('producer-leak')
      const app = express()
      app.set('env', 'test')
      const guarded = expressGuard({ timeout: 300, leakGracePeriod: 300 })
      const leaks: Array<{ kind: string; url: string; reason: string }> = []
      guarded.guard.on('leak', (leak) => leaks.push(leak))
      app.use(guarded)
      app.get('/report', async (_req, res, next) => {
        try {
          res.send(await d.run('ignore', { ms: 1_500 }))
        } catch (error) {
          next(error)
        }
      })
      const reply = await send(await serve(app), { path: '/report' })
      expect(reply.status).to.equal(503)
      await waitForEvent(worker, (e) => e.event === 'abort')
      const by = performance.now() + 5_000
      while (leaks.length === 0 && performance.now() < by) await sleep(20)
      expect(leaks.map((l) => [l.kind, l.reason])).to.deep.equal([['job', 'LG_ERR_TIMEOUT']])
      // Tracked until the job really ended on its worker, then no longer.
      await waitForEvent(worker, (e) => e.event === 'failed')
      while (d.stats().tracked > 0 && performance.now() < by + 5_000) await sleep(20)
      expect(d.stats().tracked).to.equal(0)
    })
  })

  describe('a processor that ignores its signal', () => {
    it('is reported as a leak of kind job on the worker guard after leakGracePeriod', async () => {
      const { worker, d } = await setup('leak')
      const controller = new AbortController()
      const result = d.run('ignore', { ms: 1_500 }, { signal: controller.signal, scope: null }).catch(() => 'rejected')
      const started = await waitForEvent(worker, (e) => e.event === 'start')
      controller.abort()
      expect(await result).to.equal('rejected')
      const leak = await waitForEvent(worker, (e) => e.event === 'leak')
      expect(leak.leak).to.include({ kind: 'job', method: 'JOB', reason: 'LG_ERR_REQUEST_ENDED' })
      expect((leak.leak as { url: string }).url).to.contain(`#${started.id}`)
      // Never "completed", even though the processor returned a value in the end.
      const failed = await waitForEvent(worker, (e) => e.event === 'failed' && e.id === started.id)
      expect(failed.reason).to.match(/^LG_ERR_JOB_CANCELLED: /)
    })
  })
})
