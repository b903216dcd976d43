import { expect } from 'chai'
import type { ChildApp } from '../server/helpers.js'
import { Queue } from 'bullmq'
import { createQueueDispatcher, createQueueWorker } from '@leak-guard/bullmq'
import { freePort } from '../helpers/redis.js'
import { bounded, epochNow, queueName, useRig, waitForEvent } from './helpers.js'

const STALLED_INTERVAL = 1_000
const stallEnv = { STALLED_INTERVAL: String(STALLED_INTERVAL), LOCK_DURATION: String(STALLED_INTERVAL / 2) }

describe('@leak-guard/bullmq when things break', function () {
  this.timeout(40_000)
  const rig = useRig()

  async function killMidJob(label: string, env: Record<string, string>): Promise<{ result: Promise<unknown>; killedAt: number; second: ChildApp }> {
    const name = queueName(label)
    const first = await rig.worker(name, { ...stallEnv, ...env, SKIP_STALLED_CHECK: '1' })
    const { dispatcher } = rig.producer(name)
    const result = dispatcher.run('sleep', { ms: 3_000 }, { scope: null })
    result.catch(() => {})
    await waitForEvent(first, (e) => e.event === 'start')
    // Only the survivor checks for stalls. BullMQ lets one check run per stalledInterval across all
    // workers (key `stalled-check`, PX stalledInterval); with the victim checking too, the survivor's
    // check can land just inside the victim's window and be skipped, which adds one interval (3 × in
    // all). See the package README, "Retries and stalls".
    const second = await rig.worker(name, { ...stallEnv, ...env })
    first.kill('SIGKILL')
    await first.exited
    return { result, killedAt: epochNow(), second }
  }

  describe('kill -9 of a worker mid-job, a second worker alive', () => {
    it(`retries the job on the second worker within 2 × stalledInterval + 1 s (maxStalledCount 1, BullMQ's default), and run() resolves`, async () => {
      const { result, killedAt, second } = await killMidJob('kill9-retry', {})
      const restarted = await waitForEvent(second, (e) => e.event === 'start', 10_000)
      const delay = (restarted.at as number) - killedAt
      console.log(`      kill -9 → the retry started on the second worker after ${Math.round(delay)} ms (bound ${2 * STALLED_INTERVAL + 1_000} ms)`)
      expect(delay).to.be.below(2 * STALLED_INTERVAL + 1_000)
      expect(await bounded(result, 10_000, 'run()')).to.equal('done')
    })

    it('rejects run() with LG_ERR_JOB_FAILED within 2 × stalledInterval + 1 s when stalls are not retried (maxStalledCount 0)', async () => {
      const { result, killedAt, second } = await killMidJob('kill9-fail', { MAX_STALLED_COUNT: '0' })
      const error = await bounded(
        result.then(
          () => undefined,
          (e: unknown) => e,
        ),
        10_000,
        'run()',
      )
      const delay = epochNow() - killedAt
      console.log(`      kill -9 → run() rejected after ${Math.round(delay)} ms (bound ${2 * STALLED_INTERVAL + 1_000} ms)`)
      expect(delay).to.be.below(2 * STALLED_INTERVAL + 1_000)
      expect(error).to.have.property('code', 'LG_ERR_JOB_FAILED')
      expect(error).to.have.property('failedReason').that.matches(/stalled/)
      expect(second.events.some((e) => e.event === 'start')).to.equal(false)
    })
  })

  describe('a cancel its worker never saw (worker frozen, then killed)', () => {
    it('is still honoured after the stall: the survivor reads the marker and never calls the processor', async () => {
      const name = queueName('frozen')
      const first = await rig.worker(name, { ...stallEnv, SKIP_STALLED_CHECK: '1' })
      const { dispatcher } = rig.producer(name)
      const controller = new AbortController()
      const result = dispatcher.run('sleep', { ms: 5_000 }, { scope: null, signal: controller.signal }).catch((e: unknown) => e)
      const started = await waitForEvent(first, (e) => e.event === 'start')
      first.kill('SIGSTOP') // it cannot read the cancel message
      controller.abort()
      expect(await result).to.have.property('name', 'AbortError')
      const by = performance.now() + 5_000
      while (dispatcher.stats().cancelled === 0 && performance.now() < by) await new Promise((r) => setTimeout(r, 20))
      expect(dispatcher.stats().cancelled).to.equal(1)
      // Started after the message was sent, so only the durable marker can tell it.
      const second = await rig.worker(name, stallEnv)
      first.kill('SIGKILL')
      const failed = await waitForEvent(second, (e) => e.event === 'failed' && e.id === started.id)
      expect(failed.reason).to.match(/^LG_ERR_JOB_CANCELLED: /)
      expect(second.events.some((e) => e.event === 'start')).to.equal(false)
    })
  })

  describe('Redis unreachable from the start', () => {
    it('rejects run() with LG_ERR_QUEUE_UNAVAILABLE, and the dispatcher, a worker and the queue still close', async () => {
      // No reconnects: with ioredis's default (retry for ever) BullMQ cannot even close a queue whose
      // Redis never appeared, so a test could not clean up. Inside a request its deadline bounds run().
      const connection = { host: '127.0.0.1', port: await freePort(), maxRetriesPerRequest: null, retryStrategy: () => null }
      const queue = new Queue(queueName('unreachable'), { connection })
      queue.on('error', () => {})
      const d = createQueueDispatcher({ queue, timeout: 2_000 })
      const worker = createQueueWorker(queue.name, async () => 'never', { connection, closeTimeout: 200 })
      worker.worker.on('error', () => {})
      try {
        for (let i = 0; i < 2; i++) {
          const error = await bounded(d.run('echo', {}, { scope: null }).catch((e: unknown) => e), 3_000, 'run()')
          expect(error).to.have.property('code', 'LG_ERR_QUEUE_UNAVAILABLE')
        }
        await bounded(d.close(), 3_000, 'dispatcher.close()')
        await bounded(worker.close(), 3_000, 'worker.close()')
      } finally {
        await bounded(queue.close(), 3_000, 'queue.close()')
      }
    })
  })

  describe('Redis stopped mid-run', () => {
    it('rejects waiting and new calls with LG_ERR_QUEUE_UNAVAILABLE, nothing hangs, and works again once Redis is back', async () => {
      const name = queueName('redis-gone')
      const worker = await rig.worker(name, { CLOSE_TIMEOUT: '500' })
      const { dispatcher: d } = rig.producer(name)
      const controller = new AbortController()
      const waiting = [
        d.run('sleep', { ms: 5_000 }, { scope: null }),
        d.run('sleep', { ms: 5_000 }, { scope: null, signal: controller.signal }),
      ].map((p) => p.then(() => undefined, (e: unknown) => e))
      await waitForEvent(worker, (e) => e.event === 'start')
      await rig.redis.kill()

      const errors = await bounded(Promise.all(waiting), 5_000, 'run() after Redis stopped')
      for (const error of errors) expect(error).to.have.property('code', 'LG_ERR_QUEUE_UNAVAILABLE')
      const refused = await bounded(d.run('echo', {}, { scope: null }).catch((e: unknown) => e), 1_000, 'run() while Redis is down')
      expect(refused).to.have.property('code', 'LG_ERR_QUEUE_UNAVAILABLE')
      await bounded(d.enqueue('echo', {}).catch((e: unknown) => e), 1_000, 'enqueue() while Redis is down').then((e) => expect(e).to.have.property('code', 'LG_ERR_QUEUE_UNAVAILABLE'))
      expect(d.stats()).to.include({ pending: 0, tracked: 0 })
      controller.abort() // an abort with Redis gone must not throw or hang either

      await rig.redis.restart()
      // The worker is still busy with the 5 s job it had (no cancel could reach it), so allow for that.
      const deadline = performance.now() + 15_000
      let result: unknown
      while (performance.now() < deadline) {
        result = await d.run('echo', { back: true }, { scope: null, timeout: 3_000 }).catch((e: unknown) => e)
        if (!(result instanceof Error)) break
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      expect(result).to.deep.equal({ back: true })
    })
  })
})
