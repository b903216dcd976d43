#!/usr/bin/env node
// Queries/s of `SELECT 1` through node-postgres pools, with and without @leak-guard/pg, against a
// throwaway PostgreSQL cluster (scripts/postgres.mjs). Every query runs in its own request scope
// (a fake request begun on a guard with a 30 s deadline, ended after the query), in every variant, so
// the ratios isolate what the pg integration adds. Variants run interleaved (the order rotates each
// round) on one pool each (`max` connections, `concurrency` loops); figures are medians over rounds,
// ratios the median of the per-round ratios to "plain pool". Two figures per variant: queries/s (wall
// clock; PostgreSQL runs on the same machine and takes most of the CPU) and this process's CPU time
// per query (user + system), the steadier one on a shared, loaded machine.
//
//   node bench/pg/run.mjs [--rounds 7] [--duration 1500] [--concurrency 8] [--max 4]
import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { loadavg } from 'node:os'
import pg from 'pg'
import { createGuard } from '@leak-guard/core'
import { guardPool } from '@leak-guard/pg'
import { postgresBin, startPostgres } from '../../scripts/postgres.mjs'
import { argReader, median } from '../lib.mjs'

const arg = argReader(process.argv.slice(2))
const rounds = Number(arg('--rounds', 7))
const duration = Number(arg('--duration', 1500))
const concurrency = Number(arg('--concurrency', 8))
const max = Number(arg('--max', 4))

if (postgresBin() === undefined) {
  console.error('PostgreSQL is not installed (apt-get install -y postgresql)')
  process.exit(1)
}
const db = await startPostgres()
process.on('exit', () => db.stop())
const connection = { host: db.host, port: db.port, user: db.user, database: db.database, max }

const guard = createGuard({ timeout: 30_000 })
const fakeReq = { method: 'GET', url: '/bench', headers: {} }

/** Runs `fn` inside a fresh request scope with `timeout`, then ends the request normally. */
async function inRequest(timeout, fn) {
  const res = new EventEmitter()
  res.writableFinished = true
  const scope = guard.begin(fakeReq, res, undefined, undefined, timeout)
  try {
    return await guard.enter(scope, fn)
  } finally {
    res.emit('close')
  }
}

const pools = []
function pool(guarded, options) {
  const p = new pg.Pool(connection)
  pools.push(p)
  return guarded ? guardPool(p, options) : p
}

const plain = pool(false)
const guarded = pool(true)
const noTimeout = pool(true, { statementTimeout: false })
const randomDeadline = pool(true)
const naiveSet = pool(false)
const setLocal = pool(false)

const variants = {
  // The baseline: node-postgres alone.
  'plain pool': () => inRequest(30_000, () => plain.query('SELECT 1')),
  // The claim: same query, guarded, same route deadline for every request.
  'guarded (deadline 30 s)': () => inRequest(30_000, () => guarded.query('SELECT 1')),
  // Checkout, cancel and tracking only.
  'guarded, statementTimeout: false': () => inRequest(30_000, () => noTimeout.query('SELECT 1')),
  // Worst case for the kept value: every request has a different deadline, so nearly every query
  // needs its SET (no reset though: the next user resets or overwrites it).
  'guarded, random deadline 0.1–30 s': () => inRequest(100 + Math.floor(Math.random() * 29_900), () => randomDeadline.query('SELECT 1')),
  // The alternatives, by hand on a plain pool: SET before and RESET at release on every checkout ...
  'naive: SET + query + RESET': () =>
    inRequest(30_000, async () => {
      const client = await naiveSet.connect()
      try {
        await client.query('SET statement_timeout = 30000')
        return await client.query('SELECT 1')
      } finally {
        await client.query('RESET statement_timeout')
        client.release()
      }
    }),
  // ... and SET LOCAL, which needs a transaction around the query.
  'naive: BEGIN + SET LOCAL + query + COMMIT': () =>
    inRequest(30_000, async () => {
      const client = await setLocal.connect()
      try {
        await client.query('BEGIN')
        await client.query('SET LOCAL statement_timeout = 30000')
        const result = await client.query('SELECT 1')
        await client.query('COMMIT')
        return result
      } finally {
        client.release()
      }
    }),
}

async function measure(fn) {
  let count = 0
  const cpu = process.cpuUsage()
  const end = performance.now() + duration
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await fn()
        count++
      }
    }),
  )
  const used = process.cpuUsage(cpu)
  return { rate: (count * 1000) / duration, cpu: (used.user + used.system) / count }
}

const names = Object.keys(variants)
// Warm-up: open every pool's connections and JIT the paths.
for (const name of names) {
  const end = performance.now() + 300
  while (performance.now() < end) await Promise.all(Array.from({ length: concurrency }, variants[name]))
}
const results = Object.fromEntries(names.map((n) => [n, []]))
const ratios = Object.fromEntries(names.map((n) => [n, []]))
const cpus = Object.fromEntries(names.map((n) => [n, []]))
const cpuRatios = Object.fromEntries(names.map((n) => [n, []]))
const loads = []
for (let r = 0; r < rounds; r++) {
  const order = names.map((_, i) => names[(i + r) % names.length])
  const round = {}
  for (const name of order) round[name] = await measure(variants[name])
  for (const name of names) {
    results[name].push(round[name].rate)
    ratios[name].push(round[name].rate / round['plain pool'].rate)
    cpus[name].push(round[name].cpu)
    cpuRatios[name].push(round[name].cpu / round['plain pool'].cpu)
  }
  loads.push(loadavg()[0])
  process.stderr.write(`round ${r + 1}/${rounds}\n`)
}

console.log(`Node ${process.version}, ${rounds} rounds × ${duration} ms, ${concurrency} loops on pools of ${max}, load average during the run ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`)
console.log('')
console.log('| variant | queries/s (median) | × plain (median, min–max) | CPU µs/query of this process | CPU × plain |')
console.log('|---|---:|---:|---:|---:|')
for (const name of names) {
  const rs = ratios[name]
  const cs = cpuRatios[name]
  console.log(`| ${name} | ${Math.round(median(results[name]))} | ${median(rs).toFixed(3)} (${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)}) | ${median(cpus[name]).toFixed(1)} | ${median(cs).toFixed(3)} |`)
}
for (const p of pools) await p.end()
