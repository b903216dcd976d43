import { setTimeout as sleep } from 'node:timers/promises'
import { createGuard } from '@leak-guard/core'
import { createQueueWorker } from '@leak-guard/bullmq'

const guard = createGuard() // in a worker process: leak reports and shutdown, no HTTP
guard.on('leak', (leak) => console.warn(`job kept running after its cancel: ${leak.url} (${leak.reason})`))

// BullMQ's own WorkerOptions, passed through, plus `guard` and `closeTimeout`.
const worker = createQueueWorker(
  'reports',
  async (job, signal) => {
    // `signal` aborts when the producer's request ends (from any process), at the job's deadline, and
    // when this worker closes. Hand it to everything that can stop early.
    await sleep(1_000, undefined, { signal })
    return { id: job.data.id, rows: 42 }
  },
  { connection: { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null }, concurrency: 8, guard },
)
worker.worker.on('error', (error) => console.error('worker:', error.message))

// Stops taking jobs, lets active ones finish for `closeTimeout`, then aborts their signals.
process.once('SIGTERM', () => void guard.shutdown())
