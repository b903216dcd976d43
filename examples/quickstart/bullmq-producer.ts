import express from 'express'
import { Queue } from 'bullmq'
import { leakGuard } from '@leak-guard/express'
import { createQueueDispatcher } from '@leak-guard/bullmq'

const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null }
const guarded = leakGuard({ timeout: 2_000 })
const queue = new Queue('reports', { connection })
queue.on('error', (error) => console.error('queue:', error.message)) // BullMQ emits connection errors
// At most 500 jobs waiting, then 503 + Retry-After; shutdown of the guard closes the dispatcher.
const reports = createQueueDispatcher({ queue, guard: guarded.guard, maxWaiting: 500 })

const app = express()
app.use(guarded)
app.get('/report/:id', async (req, res, next) => {
  try {
    // The job carries this request's deadline. If the request ends first (503 at 2 s, or the client
    // leaves), a waiting job is removed and a running one is cancelled on whatever worker runs it.
    res.json(await reports.run('build', { id: req.params.id }))
  } catch (error) {
    next(error)
  }
})
app.post('/rebuild', async (_req, res) => {
  // Work that must outlive the request: not cancelled when it ends, and it has its own deadline.
  const job = await reports.enqueue('rebuild-all', {}, { timeout: 10 * 60_000 })
  res.status(202).json({ id: job.id })
})
app.listen(3000)
