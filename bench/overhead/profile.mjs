#!/usr/bin/env node
// Where the overhead goes: runs bench/overhead/server.mjs for one framework in two variants at the same
// fixed request rate, taking turns in short segments, profiles each server (V8's CPU profiler through
// node:inspector, the profile `--cpu-prof` writes, started after a warm-up so start-up is left out) and
// prints self time per request by origin (leak-guard, AsyncLocalStorage, the framework, Node) and by
// function, the largest differences first.
//
//   node bench/overhead/profile.mjs [--framework fastify] [--variants bare,lg-signal] [--rate 4000]
//                                   [--duration 12] [--segments 6] [--node 22|24|26]
//
// A fixed rate keeps the event loop's batching alike for both variants; the profile is sampled (every
// 100 µs by default: `--interval` µs changes it), so compare differences of ~0.1 µs/request and up,
// and rerun before trusting smaller ones.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { onNodeLine } from '../../scripts/node-lines.mjs'
import { argReader } from '../lib.mjs'

const args = onNodeLine(import.meta.url)
const arg = argReader(args)
const framework = arg('--framework', 'fastify')
const [a, b] = arg('--variants', 'bare,lg-signal').split(',')
const rate = Number(arg('--rate', 4000))
const duration = Number(arg('--duration', 12))
const interval = Number(arg('--interval', 100))
const segments = Number(arg('--segments', 6))
const here = dirname(fileURLToPath(import.meta.url))

// Loaded into the server with --import: starts and stops the profiler on the parent's word.
const preload = `data:text/javascript,${encodeURIComponent(`
import { Session } from 'node:inspector/promises'
const session = new Session()
session.connect()
process.on('message', async (m) => {
  if (m.type === 'profile-start') {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: ${interval} })
    await session.post('Profiler.start')
    process.send({ type: 'profiling' })
  } else if (m.type === 'profile-stop') {
    const { profile } = await session.post('Profiler.stop')
    process.send({ type: 'profile', profile })
  }
})`)}`

async function ask(child, type, reply) {
  const answer = new Promise((resolve) => {
    const on = (m) => {
      if (m.type !== reply) return
      child.off('message', on)
      resolve(m)
    }
    child.on('message', on)
  })
  child.send({ type })
  return answer
}

/** One server under the profiler; its samples add up over the segments it is loaded in. */
async function start(variant) {
  const child = fork(join(here, 'server.mjs'), [framework, variant], { execArgv: ['--import', preload], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const [{ port }] = await once(child, 'message')
  const url = `http://127.0.0.1:${port}/`
  await autocannon({ url, connections: 20, duration: 2, overallRate: rate }) // warm-up, not profiled
  return { child, url, self: new Map(), groups: new Map(), requests: 0 }
}

async function segment(p, seconds) {
  await ask(p.child, 'profile-start', 'profiling')
  const run = await autocannon({ url: p.url, connections: 20, duration: seconds, overallRate: rate })
  const { profile: prof } = await ask(p.child, 'profile-stop', 'profile')
  p.requests += run.requests.total
  // Self time per function: each sample is charged to its leaf node; timeDeltas[i] is the time before sample i.
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  prof.samples.forEach((id, i) => {
    const { callFrame: f } = byId.get(id)
    const where = f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/packages\//, 'packages/')
    const key = `${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`
    const dt = prof.timeDeltas[i] ?? 0
    p.self.set(key, (p.self.get(key) ?? 0) + dt)
    const group = groupOf(f.functionName, where)
    p.groups.set(group, (p.groups.get(group) ?? 0) + dt)
  })
}

/** Coarse origin of a function, so differences too small per function still add up somewhere. */
function groupOf(name, where) {
  if (where.startsWith('packages/')) return 'leak-guard (packages/*)'
  if (/async_context_frame|async_hooks|async_local_storage/.test(where)) return 'AsyncLocalStorage (node:internal/async_*)'
  if (/abort_controller|event_target/.test(where)) return 'AbortController / EventTarget'
  if (name === '(garbage collector)') return '(garbage collector)'
  if (name === '(program)' || name === '(idle)') return name
  if (where.startsWith('node:') || where === '') return 'Node (other)'
  return where.split('/')[0]
}

// The two variants take turns in short segments, so drift in the machine's load hits both alike.
const pa = await start(a)
const pb = await start(b)
for (let i = 0; i < segments; i++) for (const p of i % 2 === 0 ? [pa, pb] : [pb, pa]) await segment(p, duration / segments)
for (const p of [pa, pb]) {
  p.child.send({ type: 'exit' })
  await once(p.child, 'exit')
  p.perRequest = (key) => (p.self.get(key) ?? 0) / p.requests
}
const keys = new Set([...pa.self.keys(), ...pb.self.keys()])
const total = (p) => [...p.self.entries()].filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(program)')).reduce((s, [, v]) => s + v, 0) / p.requests
const rows = [...keys]
  .filter((k) => !k.startsWith('(idle)'))
  .map((k) => ({ k, a: pa.perRequest(k), b: pb.perRequest(k) }))
  .sort((x, y) => Math.abs(y.b - y.a) - Math.abs(x.b - x.a))
  .slice(0, 25)
console.log(`Node ${process.version}, ${framework}: ${a} vs ${b}, ${rate} req/s for ${duration} s each in ${segments} alternating segments (after 2 s unprofiled warm-up), sampling every ${interval} µs`)
console.log(`profiled CPU per request without idle and (program): ${a} ${total(pa).toFixed(2)} µs, ${b} ${total(pb).toFixed(2)} µs`)
console.log('')
const groups = [...new Set([...pa.groups.keys(), ...pb.groups.keys()])]
  .filter((g) => g !== '(idle)')
  .map((g) => ({ g, a: (pa.groups.get(g) ?? 0) / pa.requests, b: (pb.groups.get(g) ?? 0) / pb.requests }))
  .sort((x, y) => y.b - y.a - (x.b - x.a))
console.log(`| origin (self time) | ${a} µs/req | ${b} µs/req | difference |`)
console.log('|---|---:|---:|---:|')
for (const r of groups) console.log(`| ${r.g} | ${r.a.toFixed(3)} | ${r.b.toFixed(3)} | ${(r.b - r.a >= 0 ? '+' : '') + (r.b - r.a).toFixed(3)} |`)
console.log('')
console.log(`| function (self time) | ${a} µs/req | ${b} µs/req | difference |`)
console.log('|---|---:|---:|---:|')
for (const r of rows) console.log(`| ${r.k} | ${r.a.toFixed(3)} | ${r.b.toFixed(3)} | ${(r.b - r.a >= 0 ? '+' : '') + (r.b - r.a).toFixed(3)} |`)
