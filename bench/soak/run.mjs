#!/usr/bin/env node
// Memory soak: N requests per framework against a leak-guard server (default options, `timeout: 20`)
// in a child process run with --expose-gc. Every handler reads the signal; a third of the requests
// time out (503 at 20 ms, the handler writes late), a third are disconnected by the client (a real
// socket destroyed while the handler waits on the signal), a third answer at once. The server
// measures heap used after a forced GC after the warm-up and at the end, plus the guard's registry,
// `process.getActiveResourcesInfo()` and the listeners on its sockets; samples in between show the
// trend. Goal: heap growth < 5 MB, registry empty, no growth in listeners or resources.
//
//   node bench/soak/run.mjs [--requests 200000] [--frameworks express,koa,fastify] [--concurrency 64]
//                           [--max-seconds 240] [--short] [--cpu-prof DIR] [--json]
//
// --short runs 20,000 requests per framework. --cpu-prof DIR writes a CPU profile of each server there. --max-seconds bounds each framework's run: when it
// passes, no new request starts and the report says how many ran.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { onNodeLine } from '../../scripts/node-lines.mjs'

const allFrameworks = ['express', 'koa', 'fastify']
const usage = 'node bench/soak/run.mjs [--requests 200000] [--short] [--frameworks express,koa,fastify] [--concurrency 64] [--warmup 6000] [--max-seconds 240] [--cpu-prof DIR] [--json] [--node 22|24|26]'
const opts = { requests: 200_000, frameworks: allFrameworks, concurrency: 64, maxSeconds: 240, warmup: 6_000, samples: 10, disconnectAfter: 5, json: false, profile: undefined }
try {
  const argv = onNodeLine(import.meta.url)
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const number = (min) => {
      const n = Number(argv[++i])
      if (!Number.isFinite(n) || n < min) throw new Error(`${a} must be a number >= ${min}`)
      return Math.trunc(n)
    }
    if (a === '--requests') opts.requests = number(3)
    else if (a === '--short') opts.requests = 20_000
    else if (a === '--concurrency') opts.concurrency = number(1)
    else if (a === '--max-seconds') opts.maxSeconds = number(1)
    else if (a === '--warmup') opts.warmup = number(0)
    else if (a === '--frameworks') {
      const items = String(argv[++i]).split(',')
      for (const f of items) if (!allFrameworks.includes(f)) throw new Error(`--frameworks: unknown ${f}`)
      opts.frameworks = allFrameworks.filter((f) => items.includes(f))
    } else if (a === '--json') opts.json = true
    else if (a === '--cpu-prof') opts.profile = String(argv[++i])
    else if (a === '--help' || a === '-h') {
      console.log(usage)
      process.exit(0)
    } else throw new Error(`unknown argument ${a}`)
  }
} catch (error) {
  console.error(`${error.message}\n${usage}`)
  process.exit(2)
}

const here = dirname(fileURLToPath(import.meta.url))
const log = (...a) => console.error(...a)
const kinds = ['ok', 'timeout', 'disconnect']

function ask(child, message) {
  return new Promise((resolve) => {
    const onMessage = (m) => {
      if (m.type !== 'measured' || m.label !== message.label) return
      child.off('message', onMessage)
      resolve(m)
    }
    child.on('message', onMessage)
    child.send({ type: 'measure', ...message })
  })
}

const disconnectRequest = 'GET /disconnect HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'

/** One request of `kind`; resolves with what the client saw. Never rejects. */
function one(port, pool, kind) {
  if (kind === 'disconnect') {
    // A connection of its own, destroyed a few ms after the request went out, while the handler waits.
    return new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      let answered = false
      socket.on('data', () => {
        answered = true
      })
      socket.on('error', () => {})
      socket.on('close', () => resolve(answered ? 'answered before the disconnect' : 'disconnected'))
      socket.once('connect', () => {
        socket.write(disconnectRequest)
        setTimeout(() => socket.destroy(), opts.disconnectAfter)
      })
    })
  }
  return pool.request({ path: `/${kind}`, method: 'GET' }).then(
    async (res) => {
      await res.body.dump()
      return `status ${res.statusCode}`
    },
    (error) => `error ${error.code ?? error.message}`,
  )
}

/** Runs `count` requests (kinds in turn) with `concurrency` in flight; calls onProgress(done). */
async function drive(port, pool, count, deadline, outcomes, onProgress) {
  let next = 0
  let done = 0
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      const kind = kinds[next++ % 3]
      const seen = await one(port, pool, kind)
      const key = `${kind}: ${seen}`
      outcomes[key] = (outcomes[key] ?? 0) + 1
      done++
      onProgress?.(done)
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  return done
}

const mb = (bytes) => bytes / 1024 / 1024

async function soak(framework) {
  // A start can fail while the workspace packages are being rebuilt (half-written dist files): retried.
  let child
  let port
  let stderr = ''
  for (let attempt = 1; port === undefined; attempt++) {
    stderr = ''
    child = fork(join(here, 'server.mjs'), [framework], {
      execPath: process.execPath,
      execArgv: opts.profile === undefined ? ['--expose-gc'] : ['--expose-gc', '--cpu-prof', `--cpu-prof-dir=${opts.profile}`],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const ready = await Promise.race([once(child, 'message').then(([m]) => m), once(child, 'exit').then(() => undefined)])
    if (ready !== undefined) port = ready.port
    else if (attempt >= 3) throw new Error(`soak server ${framework} did not start:\n${stderr}`)
    else await new Promise((resolve) => setTimeout(resolve, 1000))
  }
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: opts.concurrency, pipelining: 1 })

  const started = Date.now()
  const deadline = started + opts.maxSeconds * 1000
  const warmOutcomes = {}
  await drive(port, pool, opts.warmup, deadline, warmOutcomes)
  const start = await ask(child, { label: 'start' })
  const samples = [{ done: 0, heapMB: mb(start.heapUsed), socketListenersMax: start.socketListenersMax, inFlight: start.guardSize }]
  const every = Math.max(1, Math.floor(opts.requests / opts.samples))
  const outcomes = {}
  const pending = []
  const t0 = Date.now()
  const done = await drive(port, pool, opts.requests, deadline, outcomes, (n) => {
    if (n % every === 0 && n < opts.requests) {
      // Sampled under load: GC forced, in-flight requests included.
      pending.push(
        ask(child, { label: `at ${n}`, full: false }).then((m) => {
          samples.push({ done: n, heapMB: mb(m.heapUsed), socketListenersMax: m.socketListenersMax, inFlight: m.guardSize })
        }),
      )
    }
  })
  const loadSeconds = (Date.now() - t0) / 1000
  await Promise.all(pending)
  const end = await ask(child, { label: 'end' })
  samples.push({ done, heapMB: mb(end.heapUsed), socketListenersMax: end.socketListenersMax, inFlight: end.guardSize })
  samples.sort((a, b) => a.done - b.done)
  await pool.close()
  await new Promise((resolve) => setTimeout(resolve, 200))
  const closed = await ask(child, { label: 'closed' })
  child.send({ type: 'exit' })
  await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 3000).unref())])
  if (child.exitCode === null) child.kill()

  const growthMB = mb(end.heapUsed - start.heapUsed)
  const resourceGrowth = {}
  for (const type of new Set([...Object.keys(start.resources), ...Object.keys(end.resources)])) {
    const d = (end.resources[type] ?? 0) - (start.resources[type] ?? 0)
    if (d !== 0) resourceGrowth[type] = d
  }
  const checks = {
    heap: growthMB < 5,
    registry: end.guardSize === 0 && closed.guardSize === 0,
    socketListeners: end.socketListenersMax <= start.socketListenersMax,
    // Sockets come and go with the client; everything else must be back where it started.
    resources: Object.keys(resourceGrowth).every((t) => t === 'TCPSocketWrap'),
    serverListeners: end.serverListeners === start.serverListeners && closed.serverListeners === start.serverListeners,
    stderr: stderr.trim() === '',
    complete: done === opts.requests,
  }
  const serverCpuSeconds = (end.cpuMicros - start.cpuMicros) / 1e6
  return { framework, requested: opts.requests, done, loadSeconds, serverCpuSeconds, growthMB, start, end, closed, samples, outcomes, resourceGrowth, stderr, checks }
}

const t = Date.now()
const loadBefore = os.loadavg()
log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`)
log(`${opts.requests} requests per framework (after ${opts.warmup} warm-up), concurrency ${opts.concurrency}, bound ${opts.maxSeconds} s per framework`)
const results = []
for (const f of opts.frameworks) {
  log(`${f}...`)
  const r = await soak(f)
  log(`${f}: ${r.done} requests in ${r.loadSeconds.toFixed(1)} s (server CPU ${r.serverCpuSeconds.toFixed(1)} s, client CPU so far ${(process.cpuUsage().user / 1e6).toFixed(1)} s user), heap ${r.growthMB >= 0 ? '+' : ''}${r.growthMB.toFixed(2)} MB`)
  results.push(r)
}
const loadAfter = os.loadavg()
const meta = { date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, loadavgBefore: loadBefore, loadavgAfter: loadAfter, ...opts, seconds: Math.round((Date.now() - t) / 1000) }

if (opts.json) {
  console.log(JSON.stringify({ meta, results }, null, 2))
} else {
  const f2 = (x) => x.toFixed(2)
  const lines = []
  lines.push(`Node ${meta.node}, ${meta.cpus} CPUs, ${meta.date}; load average before ${loadBefore.map(f2).join(' ')}, after ${loadAfter.map(f2).join(' ')}; ${meta.seconds} s`)
  lines.push(`${opts.requests} requests per framework after ${opts.warmup} warm-up, concurrency ${opts.concurrency}, mix ok / timeout (20 ms) / client disconnect, signal read in every handler`)
  lines.push('')
  lines.push('| framework | requests | req/s | heap start → end (MB) | growth | registry end | listeners/socket start → end | server listeners | resources start → end | ok |')
  lines.push('|---|---:|---:|---|---:|---:|---|---|---|---|')
  const res = (r) =>
    Object.entries(r)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')
  for (const r of results) {
    const failed = Object.entries(r.checks).filter(([, ok]) => !ok).map(([k]) => k)
    lines.push(
      `| ${r.framework} | ${r.done} | ${Math.round(r.done / r.loadSeconds)} | ${mb(r.start.heapUsed).toFixed(2)} → ${mb(r.end.heapUsed).toFixed(2)} | ${r.growthMB >= 0 ? '+' : ''}${r.growthMB.toFixed(2)} MB | ${r.end.guardSize} | ${r.start.socketListenersMax} → ${r.end.socketListenersMax} | ${r.start.serverListeners} → ${r.end.serverListeners} | ${res(r.start.resources)} → ${res(r.end.resources)} | ${failed.length === 0 ? 'yes' : `NO: ${failed.join(', ')}`} |`,
    )
  }
  lines.push('')
  lines.push('Outcomes seen by the client and by the guard (`stats().ended`, whole run including warm-up):')
  lines.push('')
  for (const r of results) {
    lines.push(`- ${r.framework}: ${Object.entries(r.outcomes).sort().map(([k, v]) => `${k} × ${v}`).join('; ')}; guard: ${Object.entries(r.end.stats.ended).map(([k, v]) => `${k} ${v}`).join(', ')}; leaks ${Object.entries(r.end.stats.leaks).map(([k, v]) => `${k} ${v}`).join(', ')}`)
  }
  lines.push('')
  lines.push('Heap used after forced GC (MB) at each tenth of the run (in-flight requests included except at the ends):')
  lines.push('')
  for (const r of results) lines.push(`- ${r.framework}: ${r.samples.map((s) => s.heapMB.toFixed(1)).join(' → ')}`)
  for (const r of results) if (r.stderr.trim() !== '') lines.push('', `${r.framework} server stderr:`, '```', r.stderr.trim().slice(0, 2000), '```')
  console.log(lines.join('\n'))
}
process.exitCode = results.every((r) => Object.values(r.checks).every(Boolean)) ? 0 : 1
