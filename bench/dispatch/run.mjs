#!/usr/bin/env node
// Dispatcher benchmark. Every measurement runs in a fresh child process (no JIT or GC state shared
// between contenders); rounds are interleaved (round 1: every contender, round 2: every contender, …)
// and the median of the rounds is reported.
//
//   node bench/dispatch/run.mjs [--rounds 5] [--only a|b|c]
//
// (a) 200,000 trivial async tasks at concurrency 16: leak-guard dispatcher vs p-limit 7 and p-queue 9,
//     with and without an AbortSignal of its own per task.
// (b) 20,000 trivial tasks on 2 threads: leak-guard thread pool vs raw piscina 5.
// (c) abort of a running busy loop: time until run() rejects, and until a task on the replacement
//     thread completes.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const worker = new URL('../../test/dispatch/fixtures/worker.mjs', import.meta.url)
const args = process.argv.slice(2)
const arg = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}

const ASYNC_TASKS = 200_000
const CONCURRENCY = 16
const THREAD_TASKS = 20_000
const ABORT_SAMPLES = 15

// ---------------------------------------------------------------------------------------------------
// Child: one measurement, printed as JSON on stdout.

async function asyncCase(contender, withSignal) {
  const noop = async () => {}
  let submit
  if (contender === 'leak-guard') {
    const { createDispatcher } = await import('@leak-guard/core')
    const d = createDispatcher({ concurrency: CONCURRENCY, maxQueue: false })
    submit = withSignal ? () => d.run(noop, { signal: new AbortController().signal }) : () => d.run(noop)
  } else if (contender === 'p-limit') {
    const { default: pLimit } = await import('p-limit')
    const limit = pLimit(CONCURRENCY)
    // p-limit has no signal support: the task gets a fresh signal it could watch, as with the others.
    submit = withSignal
      ? () => {
          const signal = new AbortController().signal
          return limit(() => noop(signal))
        }
      : () => limit(noop)
  } else {
    const { default: PQueue } = await import('p-queue')
    const queue = new PQueue({ concurrency: CONCURRENCY })
    submit = withSignal ? () => queue.add(noop, { signal: new AbortController().signal }) : () => queue.add(noop)
  }
  const batch = async (n) => {
    const all = new Array(n)
    for (let i = 0; i < n; i++) all[i] = submit()
    await Promise.all(all)
  }
  await batch(20_000) // warm-up
  const start = performance.now()
  await batch(ASYNC_TASKS)
  const ms = performance.now() - start
  return { opsPerSec: Math.round((ASYNC_TASKS / ms) * 1000), ms }
}

async function threadCase(contender) {
  let run
  let close
  if (contender === 'leak-guard') {
    const { createThreadPool } = await import('@leak-guard/core')
    const pool = createThreadPool({ filename: worker, threads: 2, maxQueue: false })
    run = (v) => pool.run(v)
    close = () => pool.close()
  } else {
    const { Piscina } = await import('piscina')
    const pool = new Piscina({ filename: worker.href, minThreads: 2, maxThreads: 2 })
    run = (v) => pool.run(v)
    close = () => pool.close()
  }
  const batch = async (n) => {
    const all = new Array(n)
    for (let i = 0; i < n; i++) all[i] = run(i)
    await Promise.all(all)
  }
  await batch(2_000) // warm-up: threads started, modules loaded
  const start = performance.now()
  await batch(THREAD_TASKS)
  const ms = performance.now() - start
  await close()
  return { opsPerSec: Math.round((THREAD_TASKS / ms) * 1000), ms }
}

async function abortCase() {
  const { createThreadPool } = await import('@leak-guard/core')
  const pool = createThreadPool({ filename: worker, threads: 1 })
  await pool.run(0, { name: 'id' })
  const rejectMs = []
  const replaceMs = []
  for (let i = 0; i < ABORT_SAMPLES; i++) {
    const controller = new AbortController()
    const loop = pool.run(-1, { name: 'busy', signal: controller.signal }).catch(() => performance.now())
    await new Promise((r) => setTimeout(r, 20))
    const start = performance.now()
    controller.abort()
    const rejectedAt = await loop
    rejectMs.push(rejectedAt - start)
    await pool.run(0, { name: 'id' })
    replaceMs.push(performance.now() - start)
  }
  await pool.close()
  return { rejectMs: median(rejectMs), replaceMs: median(replaceMs) }
}

// ---------------------------------------------------------------------------------------------------
// Parent: interleaved rounds, medians, ratios.

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function child(spec) {
  const result = spawnSync(process.execPath, [self, '--child', spec], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 120_000 })
  if (result.status !== 0) throw new Error(`${spec} failed: ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').pop())
}

async function main() {
  if (args[0] === '--child') {
    const [kind, contender, signal] = args[1].split(':')
    const out = kind === 'a' ? await asyncCase(contender, signal === 'signal') : kind === 'b' ? await threadCase(contender) : await abortCase()
    console.log(JSON.stringify(out))
    return
  }
  const rounds = Number(arg('--rounds', '5'))
  const only = arg('--only', 'abc')
  const specs = []
  if (only.includes('a')) for (const s of ['nosignal', 'signal']) for (const c of ['leak-guard', 'p-limit', 'p-queue']) specs.push(`a:${c}:${s}`)
  if (only.includes('b')) for (const c of ['leak-guard', 'piscina']) specs.push(`b:${c}`)
  if (only.includes('c')) specs.push('c:leak-guard')
  const samples = Object.fromEntries(specs.map((s) => [s, []]))
  for (let r = 0; r < rounds; r++) {
    for (const spec of specs) samples[spec].push(child(spec))
    process.stderr.write(`round ${r + 1}/${rounds} done\n`)
  }
  const med = (spec, key) => median(samples[spec].map((s) => s[key]))
  const fmt = (n) => n.toLocaleString('en-US', { maximumFractionDigits: 0 })
  console.log(`Node ${process.version}, ${rounds} rounds, medians`)
  if (only.includes('a')) {
    console.log(`\n(a) ${fmt(ASYNC_TASKS)} trivial async tasks, concurrency ${CONCURRENCY} (tasks/s)`)
    console.log('| per-task signal | leak-guard | p-limit 7 | p-queue 9 | leak-guard ÷ p-limit | leak-guard ÷ p-queue |')
    console.log('| --- | --- | --- | --- | --- | --- |')
    for (const s of ['nosignal', 'signal']) {
      const lg = med(`a:leak-guard:${s}`, 'opsPerSec')
      const pl = med(`a:p-limit:${s}`, 'opsPerSec')
      const pq = med(`a:p-queue:${s}`, 'opsPerSec')
      console.log(`| ${s === 'signal' ? 'yes' : 'no'} | ${fmt(lg)} | ${fmt(pl)} | ${fmt(pq)} | ${(lg / pl).toFixed(2)}× | ${(lg / pq).toFixed(2)}× |`)
    }
  }
  if (only.includes('b')) {
    const lg = med('b:leak-guard', 'opsPerSec')
    const pi = med('b:piscina', 'opsPerSec')
    console.log(`\n(b) ${fmt(THREAD_TASKS)} trivial tasks on 2 threads (tasks/s)`)
    console.log('| leak-guard thread pool | raw piscina 5 | ratio |')
    console.log('| --- | --- | --- |')
    console.log(`| ${fmt(lg)} | ${fmt(pi)} | ${(lg / pi).toFixed(2)}× |`)
  }
  if (only.includes('c')) {
    console.log(`\n(c) abort of a running busy loop (median of ${ABORT_SAMPLES} aborts per round, then median of rounds)`)
    console.log('| run() rejects after | replacement thread finishes a task after |')
    console.log('| --- | --- |')
    console.log(`| ${med('c:leak-guard', 'rejectMs').toFixed(2)} ms | ${med('c:leak-guard', 'replaceMs').toFixed(1)} ms |`)
  }
}

await main()
