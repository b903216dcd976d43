#!/usr/bin/env node
// @leak-guard/bullmq benchmark, on a throwaway redis-server (127.0.0.1, free port, no persistence).
//
//   node bench/bullmq/run.mjs [--rounds 5] [--jobs 3000] [--trials 1000] [--only a|b]
//
// (a) Round trips at concurrency 16 (16 lanes, each adding a job and awaiting its result): leak-guard's
//     run() (with an AbortController of its own per job) and a createQueueWorker() worker, against
//     plain BullMQ: queue.add() + job.waitUntilFinished(queueEvents) (one shared QueueEvents; jobs kept,
//     BullMQ's default, see below) and a plain Worker. Each worker runs in its own child process with concurrency 16 and returns job.data.
//     Rounds are interleaved (order rotated each round), each on a fresh queue, after a warm-up; the
//     ratio is taken within each round and its median reported. Besides wall-clock jobs/s it reports
//     jobs per CPU second of the three processes involved (producer and worker: process.cpuUsage();
//     redis-server: INFO cpu), which a machine busy with other jobs disturbs much less.
// (b) Abort → the worker's processor signal: `--trials` sequential jobs that wait on their signal; the
//     producer aborts each once the worker reports (IPC) that it started, and the worker records when
//     its signal aborted. Latency = worker's abort time − producer's abort time, both on the epoch clock
//     of performance.timeOrigin + performance.now() (one machine, so one clock).
import { fork, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const args = process.argv.slice(2)
const arg = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const now = () => performance.timeOrigin + performance.now()

// ---------------------------------------------------------------------------------------------------
// Child: a worker process. argv: --worker plain|lg <queue> <port>

if (args[0] === '--worker') {
  const [, kind, queueName, port] = args
  const { Worker } = await import('bullmq')
  const { createQueueWorker } = await import('@leak-guard/bullmq')
  const connection = { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null }
  const options = { connection, concurrency: 16 }
  let close
  if (kind === 'plain') {
    const worker = new Worker(queueName, async (job) => job.data, options)
    worker.on('error', () => {})
    await worker.waitUntilReady()
    close = () => worker.close()
  } else {
    const worker = createQueueWorker(
      queueName,
      (job, signal) => {
        if (job.name !== 'wait') return Promise.resolve(job.data)
        return new Promise((resolve, reject) => {
          signal.addEventListener('abort', () => {
            process.send({ aborted: job.id, at: now() })
            reject(signal.reason)
          })
          process.send({ started: job.id })
        })
      },
      options,
    )
    worker.worker.on('error', () => {})
    await worker.waitUntilReady()
    await worker.worker.waitUntilReady()
    close = () => worker.close()
  }
  let mark = process.cpuUsage()
  process.on('message', async (m) => {
    if (m === 'mark') mark = process.cpuUsage()
    else if (m === 'cpu') {
      const used = process.cpuUsage(mark)
      process.send({ cpuMs: (used.user + used.system) / 1000 })
    } else if (m === 'close') {
      await close()
      process.exit(0)
    }
  })
  process.on('disconnect', () => process.exit(0)) // the parent died: do not linger
  process.send('ready')
}

// ---------------------------------------------------------------------------------------------------
// Parent.

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function startRedis() {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'lg-bench-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  const ok = await new Promise((resolve) => {
    child.once('error', () => resolve(false))
    const poll = () => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => setTimeout(poll, 20))
    }
    poll()
  })
  if (!ok) throw new Error('redis-server could not be started (is it installed?)')
  await new Promise((r) => setTimeout(r, 100))
  return {
    port,
    stop() {
      child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function startWorker(kind, queueName, port) {
  const child = fork(self, ['--worker', kind, queueName, String(port)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve) => {
    child.once('message', () => resolve(child))
  })
}

async function stopWorker(child) {
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.send('close')
  await exited
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

let queueSeq = 0

/** One contender's throughput: jobs/s over `jobs` round trips on 16 lanes, after a warm-up. */
async function throughput(kind, port, jobs) {
  const { Queue, QueueEvents } = await import('bullmq')
  const { createQueueDispatcher } = await import('@leak-guard/bullmq')
  const name = `bench-${kind}-${process.pid}-${++queueSeq}`
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null }
  const worker = await startWorker(kind, name, port)
  const queue = new Queue(name, { connection })
  let submit
  let cleanup
  if (kind === 'plain') {
    const events = new QueueEvents(name, { connection })
    await events.waitUntilReady()
    // BullMQ's default removal (keep the job): with removeOnComplete waitUntilFinished() fails with
    // "Missing key" when the job finished before it looked (the reason run() does not use it).
    queue.setMaxListeners(64) // waitUntilFinished() adds a 'closing' listener per call
    submit = async (i) => {
      const job = await queue.add('echo', i)
      return job.waitUntilFinished(events)
    }
    cleanup = () => events.close()
  } else {
    const d = createQueueDispatcher({ queue, maxWaiting: false })
    submit = (i) => d.run('echo', i, { scope: null, signal: new AbortController().signal })
    cleanup = () => d.close()
  }
  const batch = async (count) => {
    let next = 0
    const lane = async () => {
      while (next < count) await submit(next++)
    }
    await Promise.all(Array.from({ length: 16 }, lane))
  }
  await batch(Math.min(500, jobs))
  const client = await queue.client
  const redisCpu = async () => {
    const info = await client.info('cpu')
    const field = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)[1])
    return (field('used_cpu_user') + field('used_cpu_sys')) * 1000
  }
  worker.send('mark')
  const redisBefore = await redisCpu()
  const cpuBefore = process.cpuUsage()
  const start = performance.now()
  await batch(jobs)
  const ms = performance.now() - start
  const producer = process.cpuUsage(cpuBefore)
  const redisMs = (await redisCpu()) - redisBefore
  const workerMs = await new Promise((resolve) => {
    const onMessage = (m) => {
      if (m.cpuMs !== undefined) {
        worker.off('message', onMessage)
        resolve(m.cpuMs)
      }
    }
    worker.on('message', onMessage)
    worker.send('cpu')
  })
  const cpuMs = (producer.user + producer.system) / 1000 + workerMs + redisMs
  await cleanup()
  await queue.obliterate({ force: true }).catch(() => {})
  await queue.close()
  await stopWorker(worker)
  if (process.env.LG_BENCH_DEBUG) process.stderr.write(`${kind}: µs per job: producer ${(((producer.user + producer.system) / jobs)).toFixed(0)}, worker ${((workerMs * 1000) / jobs).toFixed(0)}, redis ${((redisMs * 1000) / jobs).toFixed(0)}\n`)
  return { wall: (jobs / ms) * 1000, cpu: (jobs / cpuMs) * 1000 }
}

async function abortLatency(port, trials) {
  const { Queue } = await import('bullmq')
  const { createQueueDispatcher } = await import('@leak-guard/bullmq')
  const name = `bench-abort-${process.pid}`
  const worker = await startWorker('lg', name, port)
  const queue = new Queue(name, { connection: { host: '127.0.0.1', port, maxRetriesPerRequest: null } })
  const d = createQueueDispatcher({ queue, maxWaiting: false })
  const latencies = []
  for (let t = 0; t < trials + 20; t++) {
    const controller = new AbortController()
    const result = d.run('wait', t, { scope: null, signal: controller.signal }).catch(() => {})
    await new Promise((resolve) => {
      const onMessage = (m) => {
        if (m.started !== undefined) {
          worker.off('message', onMessage)
          resolve()
        }
      }
      worker.on('message', onMessage)
    })
    const abortedAt = now()
    const seen = new Promise((resolve) => {
      const onMessage = (m) => {
        if (m.aborted !== undefined) {
          worker.off('message', onMessage)
          resolve(m.at)
        }
      }
      worker.on('message', onMessage)
    })
    controller.abort()
    const at = await seen
    await result
    if (t >= 20) latencies.push(at - abortedAt) // the first 20 warm up
  }
  await d.close()
  await queue.close()
  await stopWorker(worker)
  return latencies
}

async function main() {
  const rounds = Number(arg('--rounds', 5))
  const jobs = Number(arg('--jobs', 3000))
  const trials = Number(arg('--trials', 1000))
  const only = arg('--only', undefined)
  const redis = await startRedis()
  const load = [loadavg()[0]]
  const { default: bullmqPackage } = await import('bullmq/package.json', { with: { type: 'json' } }).catch(() => ({ default: { version: '?' } }))
  console.log(`Node ${process.version}, bullmq ${bullmqPackage.version}, redis on 127.0.0.1:${redis.port}; load average before: ${load[0].toFixed(2)}\n`)
  try {
    if (only === undefined || only === 'a') {
      const contenders = ['lg', 'plain']
      const rows = { lg: [], plain: [], lgCpu: [], plainCpu: [] }
      const ratios = []
      const cpuRatios = []
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? contenders : [...contenders].reverse()
        const got = {}
        for (const kind of order) got[kind] = await throughput(kind, redis.port, jobs)
        rows.lg.push(got.lg.wall)
        rows.plain.push(got.plain.wall)
        rows.lgCpu.push(got.lg.cpu)
        rows.plainCpu.push(got.plain.cpu)
        ratios.push(got.lg.wall / got.plain.wall)
        cpuRatios.push(got.lg.cpu / got.plain.cpu)
        process.stderr.write(
          `round ${r + 1}: run() ${Math.round(got.lg.wall)} jobs/s (${Math.round(got.lg.cpu)} per CPU s), plain ${Math.round(got.plain.wall)} jobs/s (${Math.round(got.plain.cpu)} per CPU s), ratio ${(got.lg.wall / got.plain.wall).toFixed(3)} (CPU ${(got.lg.cpu / got.plain.cpu).toFixed(3)})\n`,
        )
      }
      load.push(loadavg()[0])
      const range = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`
      console.log(`(a) ${jobs} round trips at concurrency 16, ${rounds} rounds; CPU = producer + worker process + redis-server`)
      console.log('')
      console.log('| contender | jobs/s wall (median) | jobs per CPU second (median) |')
      console.log('| --- | --- | --- |')
      console.log(`| run() + createQueueWorker, signal per job | ${Math.round(median(rows.lg))} | ${Math.round(median(rows.lgCpu))} |`)
      console.log(`| queue.add + job.waitUntilFinished + Worker | ${Math.round(median(rows.plain))} | ${Math.round(median(rows.plainCpu))} |`)
      console.log(`| ratio (median of per-round ratios; min–max) | **${median(ratios).toFixed(2)}×** (${range(ratios)}) | **${median(cpuRatios).toFixed(2)}×** (${range(cpuRatios)}) |`)
      console.log('')
    }
    if (only === undefined || only === 'b') {
      const latencies = await abortLatency(redis.port, trials)
      load.push(loadavg()[0])
      console.log(`(b) abort → worker signal, ${latencies.length} trials: p50 ${median(latencies).toFixed(2)} ms, p99 ${pct(latencies, 99).toFixed(2)} ms, max ${Math.max(...latencies).toFixed(2)} ms`)
      console.log('')
    }
    console.log(`load average (1 min) during the run: ${load.map((l) => l.toFixed(2)).join(' → ')}`)
  } finally {
    redis.stop()
  }
}

if (args[0] !== '--worker') await main()
