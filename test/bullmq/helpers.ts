import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Queue } from 'bullmq'
import { ChildApp, type ChildEvent } from '../server/helpers.js'
import type { RedisServer } from '../helpers/redis.js'

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
