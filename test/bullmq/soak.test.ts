import { expect } from 'chai'
import type { Queue } from 'bullmq'
import { queueName, stopWorker, useRig } from './helpers.js'

const JOBS = Number(process.env.LG_SOAK_JOBS ?? 10_000)
const IN_FLIGHT = 64

/** Keys without a TTL (the stalled-check lock and the like come and go on their own). */
async function durableKeys(queue: Queue): Promise<string[]> {
  const client = (await queue.client) as unknown as { keys(p: string): Promise<string[]>; pttl(k: string): Promise<number> }
  const keys = await client.keys('*')
  const durable: string[] = []
  for (const key of keys) if ((await client.pttl(key)) === -1) durable.push(key)
  return durable.sort()
}

/** A seeded generator, so a failing mix can be replayed (LG_SOAK_SEED). */
function random(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('@leak-guard/bullmq soak', function () {
  this.timeout(180_000)
  const rig = useRig()

  it(`runs ${JOBS} jobs on two worker processes with random aborts (queued and active) and deadlines: no late start, nothing pending or active, Redis keys back to baseline`, async () => {
    const name = queueName('soak')
    const env = { CONCURRENCY: '16', QUIET: '1' }
    const workers = [await rig.worker(name, env), await rig.worker(name, env)]
    const { queue, dispatcher: d } = rig.producer(name, { maxWaiting: false })
    expect(await d.run('echo', 'warm-up', { scope: null })).to.equal('warm-up')
    const baseline = await durableKeys(queue)

    const seed = Number(process.env.LG_SOAK_SEED ?? Date.now() % 1_000_000)
    const rand = random(seed)
    const outcomes = { completed: 0, aborted: 0, timedOut: 0, other: [] as unknown[] }
    let next = 0
    const started = performance.now()
    async function lane(): Promise<void> {
      while (next < JOBS) {
        next++
        const ms = 1 + Math.floor(rand() * 20)
        const kind = rand()
        const controller = new AbortController()
        let timer: NodeJS.Timeout | undefined
        let timeout: number | false = 5_000
        if (kind < 0.2) timer = setTimeout(() => controller.abort(), Math.floor(rand() * 5)) // mostly while queued
        else if (kind < 0.4) timer = setTimeout(() => controller.abort(), 5 + Math.floor(rand() * 30)) // mostly while active
        else if (kind < 0.6) timeout = 1 + Math.floor(rand() * 30) // a deadline that often passes
        try {
          await d.run('sleep', { ms }, { scope: null, signal: controller.signal, timeout })
          outcomes.completed++
        } catch (error) {
          const e = error as { code?: unknown; name?: string }
          if (e.name === 'AbortError') outcomes.aborted++
          else if (e.code === 'LG_ERR_TIMEOUT') outcomes.timedOut++
          else outcomes.other.push(error)
        } finally {
          clearTimeout(timer)
        }
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
    const elapsed = performance.now() - started

    expect(outcomes.other, `seed ${seed}`).to.deep.equal([])
    expect(outcomes.completed + outcomes.aborted + outcomes.timedOut).to.equal(JOBS)
    const stats = d.stats()
    expect(stats.pending).to.equal(0)
    expect(stats.removed, 'some cancels caught the job while queued').to.be.above(0)
    expect(stats.cancelled, 'some cancels reached an active job').to.be.above(0)

    // Cancelled jobs end on their workers shortly after: wait for the last 'failed' events, bounded.
    const settleBy = performance.now() + 15_000
    while ((d.stats().tracked > 0 || (await queue.getActiveCount()) > 0) && performance.now() < settleBy) await new Promise((r) => setTimeout(r, 100))
    expect(d.stats().tracked).to.equal(0)
    expect(await queue.getActiveCount()).to.equal(0)
    expect(await queue.getJobCountByTypes('wait', 'delayed', 'prioritized', 'completed', 'failed')).to.equal(0)
    // Back to baseline: no key beyond those there before the soak. (BullMQ's own `marker` key may be
    // there or not at either moment: it exists while a job waits for a worker.)
    const extra = async (): Promise<string[]> => (await durableKeys(queue)).filter((key) => !baseline.includes(key))
    let left = await extra()
    while (left.length > 0 && performance.now() < settleBy) {
      await new Promise((r) => setTimeout(r, 200))
      left = await extra()
    }
    expect(left).to.deep.equal([])
    const keys = await durableKeys(queue)

    const closed = await Promise.all(workers.map((w) => stopWorker(w)))
    let calls = 0
    const lateBy: unknown[] = []
    for (const c of closed) {
      lateBy.push(c?.maxLateBy)
      expect(c, 'worker closed').to.not.equal(undefined)
      expect(c!.lateStarts, 'processor calls more than 10 ms after the job deadline').to.equal(0)
      expect((c!.stats as { active: number }).active).to.equal(0)
      calls += c!.calls as number
    }
    console.log(
      `      soak: ${JOBS} jobs in ${Math.round(elapsed)} ms (seed ${seed}): ${outcomes.completed} completed, ${outcomes.aborted} aborted, ${outcomes.timedOut} timed out; ` +
        `${stats.removed} removed before start, ${stats.cancelled} cancelled on a worker; ${calls} processor calls (latest start vs deadline per worker: ${lateBy.join(', ')} ms); keys ${baseline.join(' ')} → ${keys.join(' ')}`,
    )
  })
})
