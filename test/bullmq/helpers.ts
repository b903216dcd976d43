import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Queue } from 'bullmq'
import { createQueueDispatcher, type QueueDispatcher, type QueueDispatcherOptions } from '@leak-guard/bullmq'
import { ChildApp, type ChildEvent } from '../server/helpers.js'
import { redisOrSkip, type RedisServer } from '../helpers/redis.js'

const workerScript = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'worker.mjs')

let queues = 0
/** A queue name no other test uses. */
export function queueName(label: string): string {
  return `${label}-${process.pid}-${++queues}`
}

export function connection(redis: RedisServer): { host: string; port: number; maxRetriesPerRequest: null } {
  return { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null }
}

export function makeQueue(redis: RedisServer, name: string): Queue {
  const queue = new Queue(name, { connection: connection(redis) })
  queue.on('error', () => {}) // Redis-gone tests stop Redis under it
  return queue
}

/** A worker process (fixtures/worker.mjs) on `queue`; resolves once it listens for cancels and jobs. */
export async function startWorker(redis: RedisServer, queue: string, env: Record<string, string> = {}): Promise<ChildApp> {
  const app = new ChildApp(workerScript, { REDIS_PORT: String(redis.port), QUEUE: queue, ...env })
  await app.waitFor('ready')
  return app
}

/** Waits until `app` printed an event matching `test`. */
export async function waitForEvent(app: ChildApp, test: (e: ChildEvent) => boolean, ms = 10_000): Promise<ChildEvent> {
  const deadline = performance.now() + ms
  for (;;) {
    const found = app.events.find(test)
    if (found !== undefined) return found
    if (performance.now() > deadline) throw new Error(`no matching event within ${ms} ms; got ${JSON.stringify(app.events.slice(-20))}; stderr: ${app.stderr}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Stops a worker process gracefully (SIGTERM → guard.shutdown()) and resolves with its 'closed' event. */
export async function stopWorker(app: ChildApp): Promise<ChildEvent | undefined> {
  if (app.child.exitCode !== null || app.child.signalCode !== null) return undefined
  app.kill('SIGTERM')
  await app.exited
  return app.events.find((e) => e.event === 'closed')
}

/** Number of keys in the Redis the queue uses. */
export async function keyCount(queue: Queue): Promise<number> {
  const client = (await queue.client) as unknown as { dbsize(): Promise<number> }
  return client.dbsize()
}

export function epochNow(): number {
  return performance.timeOrigin + performance.now()
}

/** Settles with `promise`, or rejects once `ms` passed: a hang fails the test instead of the run. */
export function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
    }),
  ])
}

/**
 * What a suite of these tests runs on: a throwaway Redis for the suite (skipped, saying why, without
 * redis-server), and per test the worker processes, the queue and the dispatcher it made, closed after
 * each test even when it failed (bounded, so a broken Redis cannot hang the run; Redis is restarted if a
 * test stopped it).
 */
export class Rig {
  redis!: RedisServer
  #workers: ChildApp[] = []
  #producers: Array<{ queue: Queue; dispatcher: QueueDispatcher }> = []
  #deferred: Array<() => Promise<unknown>> = []

  /** Starts a worker process on `queue` (fixtures/worker.mjs). */
  async worker(queue: string, env: Record<string, string> = {}): Promise<ChildApp> {
    const app = startWorker(this.redis, queue, env)
    this.#workers.push(await app)
    return app
  }

  /** A queue and a dispatcher on it. */
  producer(queue: string, options: Omit<QueueDispatcherOptions, 'queue'> = {}): { queue: Queue; dispatcher: QueueDispatcher } {
    const q = makeQueue(this.redis, queue)
    const produced = { queue: q, dispatcher: createQueueDispatcher({ queue: q, ...options }) }
    this.#producers.push(produced)
    return produced
  }

  /** Runs `fn` first when the test ends (servers, extra connections). */
  defer(fn: () => Promise<unknown>): void {
    this.#deferred.push(fn)
  }

  async reset(): Promise<void> {
    for (const fn of this.#deferred.splice(0)) await bounded(fn(), 5_000, 'a deferred close')
    for (const { queue, dispatcher } of this.#producers.splice(0)) {
      await bounded(dispatcher.close(), 5_000, 'dispatcher.close()')
      await bounded(queue.close(), 5_000, 'queue.close()').catch(() => queue.disconnect())
    }
    for (const w of this.#workers.splice(0)) await bounded(stopWorker(w), 5_000, 'worker shutdown').catch(() => w.kill('SIGKILL'))
    if (!this.redis.running) await this.redis.restart()
  }
}

/** A `Rig` for the enclosing suite. */
export function useRig(): Rig {
  const rig = new Rig()
  let server: RedisServer | undefined
  before(async function () {
    server = await redisOrSkip(this)
    rig.redis = server
  })
  afterEach(() => rig.reset())
  after(async () => {
    await server?.stop()
  })
  return rig
}
