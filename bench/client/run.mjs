#!/usr/bin/env node
// Requests/s through leak-guard's client.fetch()/client.request() vs undici's own fetch()/request()
// on an Agent with the same settings, against a local upstream in a child process. Variants run
// interleaved (the order rotates each round) and each figure is the median of the rounds.
// Two figures per variant: requests/s (wall clock) and CPU time of this process per request. On a
// shared, loaded machine the second is the steadier one: it does not count time the process was not
// scheduled, and 1e6 / (CPU µs per request) is the throughput a CPU-bound client would reach.
//
//   node bench/client/run.mjs [--rounds 7] [--duration 2000] [--concurrency 32] [--no-watcher] [--node 22|24|26]
//
// --no-watcher: the request scope's guard is created with `context: false`, which leaves out the
// outgoing-call watcher (observe/outgoing: every call created inside a live scope joins its tasks).
import { fork } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Agent, fetch, request } from 'undici'
import { createGuard } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'
import { onNodeLine } from '../../scripts/node-lines.mjs'

const args = onNodeLine(import.meta.url)
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(args[i + 1])
}
const rounds = arg('rounds', 7)
const duration = arg('duration', 2000)
const concurrency = arg('concurrency', 32)
const watcher = !args.includes('--no-watcher')

const here = dirname(fileURLToPath(import.meta.url))
const child = fork(join(here, 'upstream.mjs'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
const [{ port }] = await once(child, 'message')
const url = `http://127.0.0.1:${port}/item`

// Same settings on both sides: what createHttpClient() gives its Agent.
const settings = { connections: 32, keepAliveTimeout: 4_000, connectTimeout: 10_000, headersTimeout: 30_000, bodyTimeout: 30_000 }
const agent = new Agent({
  connections: settings.connections,
  pipelining: 1,
  keepAliveTimeout: settings.keepAliveTimeout,
  keepAliveMaxTimeout: settings.keepAliveTimeout,
  headersTimeout: settings.headersTimeout,
  bodyTimeout: settings.bodyTimeout,
  connect: { timeout: settings.connectTimeout },
})
const client = createHttpClient({ ...settings, maxQueue: 256, timeout: 30_000 })

// One long-lived request scope (no deadline) for the "in a request scope" variants: every client call
// registers with it and unregisters when it settles. `scope.run()` (AsyncLocalStorage) is paid by the
// undici variants run in it too, so their ratio is the client's own cost inside a request.
const guard = createGuard({ timeout: false, context: watcher })
const fakeReq = { method: 'GET', url: '/bench', headers: {} }
const fakeRes = new EventEmitter()
const scope = guard.begin(fakeReq, fakeRes)

const variants = {
  'undici fetch': async () => {
    const r = await fetch(url, { dispatcher: agent })
    await r.arrayBuffer()
  },
  'client.fetch': async () => {
    const r = await client.fetch(url)
    await r.arrayBuffer()
  },
  // What a caller pays for cancellation with undici alone: a fresh AbortController per call.
  'undici fetch + signal': async () => {
    const r = await fetch(url, { dispatcher: agent, signal: new AbortController().signal })
    await r.arrayBuffer()
  },
  // Inside a request scope: the same calls from a handler's point of view. undici's fetch there does
  // nothing for the scope; the client hands its fetch a per-call signal carrying the request's reason.
  'undici fetch (in a request scope)': () =>
    scope.run(async () => {
      const r = await fetch(url, { dispatcher: agent })
      await r.arrayBuffer()
    }),
  'client.fetch (in a request scope)': () =>
    scope.run(async () => {
      const r = await client.fetch(url)
      await r.arrayBuffer()
    }),
  'undici request': async () => {
    const r = await request(url, { dispatcher: agent })
    await r.body.arrayBuffer()
  },
  'client.request': async () => {
    const r = await client.request(url)
    await r.body.arrayBuffer()
  },
  'undici request (in a request scope)': () =>
    scope.run(async () => {
      const r = await request(url, { dispatcher: agent })
      await r.body.arrayBuffer()
    }),
  'client.request (in a request scope)': () =>
    scope.run(async () => {
      const r = await client.request(url)
      await r.body.arrayBuffer()
    }),
}

async function measure(fn) {
  let count = 0
  const end = performance.now() + duration
  const worker = async () => {
    while (performance.now() < end) {
      await fn()
      count++
    }
  }
  const start = performance.now()
  const cpu = process.cpuUsage()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const used = process.cpuUsage(cpu)
  return { rps: count / ((performance.now() - start) / 1000), cpuPerRequest: (used.user + used.system) / count }
}

const names = Object.keys(variants)
// Warm-up: JIT, connections.
for (const name of names) await measure.call(null, variants[name]).catch((e) => { throw e })
const results = Object.fromEntries(names.map((n) => [n, []]))
const cpu = Object.fromEntries(names.map((n) => [n, []]))
for (let round = 0; round < rounds; round++) {
  const order = names.map((_, i) => names[(i + round) % names.length])
  for (const name of order) {
    const m = await measure(variants[name])
    results[name].push(m.rps)
    cpu[name].push(m.cpuPerRequest)
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const med = Object.fromEntries(names.map((n) => [n, median(results[n])]))
const medCpu = Object.fromEntries(names.map((n) => [n, median(cpu[n])]))
console.log(`node ${process.version}, undici ${(await import('undici/package.json', { with: { type: 'json' } })).default.version}, ${rounds} rounds x ${duration} ms, concurrency ${concurrency}${watcher ? '' : ', no outgoing-call watcher'}`)
for (const name of names) {
  console.log(`${name.padEnd(40)} median ${med[name].toFixed(0).padStart(7)} req/s  ${medCpu[name].toFixed(1).padStart(7)} CPU µs/req   req/s rounds: ${results[name].map((x) => x.toFixed(0)).join(' ')}`)
}
// Also the median of the per-round ratios: the variants compared are run next to each other in most
// rounds, so a ratio taken within a round is less exposed to load that changes between rounds.
const perRound = (a, b, xs, invert) => median(xs[a].map((x, i) => (invert ? xs[b][i] / x : x / xs[b][i])))
const ratio = (a, b) =>
  `${(med[a] / med[b]).toFixed(3)} (req/s)  ${(medCpu[b] / medCpu[a]).toFixed(3)} (CPU per request)` +
  `   per-round median ${perRound(a, b, results, false).toFixed(3)} (req/s)  ${perRound(a, b, cpu, true).toFixed(3)} (CPU)`
console.log(`ratio client.fetch / undici fetch:                 ${ratio('client.fetch', 'undici fetch')}`)
console.log(`ratio client.fetch / undici fetch + signal:        ${ratio('client.fetch', 'undici fetch + signal')}`)
console.log(`ratio client.request / undici request:             ${ratio('client.request', 'undici request')}`)
console.log(`ratio client.fetch / undici fetch, in a scope:     ${ratio('client.fetch (in a request scope)', 'undici fetch (in a request scope)')}`)
console.log(`ratio client.request / undici request, in a scope: ${ratio('client.request (in a request scope)', 'undici request (in a request scope)')}`)
console.log(`ratio client.request in a scope / undici request:  ${ratio('client.request (in a request scope)', 'undici request')}`)

fakeRes.emit('close')
await client.close()
await agent.close()
child.disconnect()
