#!/usr/bin/env node
// Dispatcher benchmark. Every measurement runs in a fresh child process (no JIT or GC state shared
// between contenders); rounds are interleaved (every contender once per round, the order rotated from
// round to round), each child times 3 batches after a warm-up and reports their median, and the tables
// show the median of the rounds. Ratios are taken within each round (contenders that ran minutes apart
// on a shared machine are never compared) and their median is reported.
//
//   node bench/dispatch/run.mjs [--rounds 5] [--only a|b|c]
//
// (a) 200,000 trivial async tasks at concurrency 16: leak-guard dispatcher vs p-limit 7 and p-queue 9,
//     with and without an AbortSignal of its own per task. Reported as tasks per wall-clock second and
//     per CPU second (process.cpuUsage(), which a busy machine disturbs much less).
// (b) 20,000 trivial tasks on 2 threads: leak-guard thread pool vs raw piscina 5, without and with an
//     AbortSignal per task (wall clock: the main thread and both workers share the CPUs).
// (c) abort of a running busy loop: time until run() rejects, and until a task on the replacement
//     thread completes.
import { spawnSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { argReader, median, timedBatches } from '../lib.mjs'

const self = fileURLToPath(import.meta.url)
const worker = new URL('../../test/dispatch/fixtures/worker.mjs', import.meta.url)
const args = process.argv.slice(2)
const arg = argReader(args)

const ASYNC_TASKS = 200_000
const CONCURRENCY = 16
const THREAD_TASKS = 20_000
const ABORT_SAMPLES = 15
const BATCHES = 3

// ---------------------------------------------------------------------------------------------------
// Child: one measurement, printed as JSON on stdout.

/** A warm-up batch, then BATCHES timed ones; medians of wall and CPU throughput. */
const timed = (submit, warmup, n) => timedBatches(submit, warmup, n, BATCHES)

async function asyncCase(contender, withSignal) {
  // The same task for every contender; with signals each submission makes its own AbortController
  // and hands its signal over in the contender's own way.
  const noop = async () => {}
  let submit
  if (contender === 'leak-guard') {
    const { createDispatcher } = await import('@leak-guard/core')
    const d = createDispatcher({ concurrency: CONCURRENCY, maxQueue: false })
    submit = withSignal ? () => d.run(noop, { signal: new AbortController().signal }) : () => d.run(noop)
  } else if (contender === 'p-limit') {
    const { default: pLimit } = await import('p-limit')
    const limit = pLimit(CONCURRENCY)
    // p-limit has no signal support: the task gets the signal as an argument, as with the others.
    submit = withSignal ? () => limit(noop, new AbortController().signal) : () => limit(noop)
  } else {
    const { default: PQueue } = await import('p-queue')
    const queue = new PQueue({ concurrency: CONCURRENCY })
    submit = withSignal ? () => queue.add(noop, { signal: new AbortController().signal }) : () => queue.add(noop)
  }
  return timed(submit, 20_000, ASYNC_TASKS)
}

async function threadCase(contender, withSignal) {
  let run
  let close
  if (contender === 'leak-guard') {
    const { createThreadPool } = await import('@leak-guard/core')
    const pool = createThreadPool({ filename: worker, threads: 2, maxQueue: false })
    run = withSignal ? (v) => pool.run(v, { signal: new AbortController().signal }) : (v) => pool.run(v)
    close = () => pool.close()
  } else {
    const { Piscina } = await import('piscina')
    const pool = new Piscina({ filename: worker.href, minThreads: 2, maxThreads: 2 })
    run = withSignal ? (v) => pool.run(v, { signal: new AbortController().signal }) : (v) => pool.run(v)
    close = () => pool.close()
  }
  // Warm-up: threads started, modules loaded.
  const result = await timed(run, 2_000, THREAD_TASKS)
  await close()
  return result
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

function child(spec) {
  const result = spawnSync(process.execPath, [self, '--child', spec], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 120_000 })
  if (result.status !== 0) throw new Error(`${spec} failed: ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').pop())
}

async function main() {
  if (args[0] === '--child') {
    const [kind, contender, signal] = args[1].split(':')
    const withSignal = signal === 'signal'
    const out = kind === 'a' ? await asyncCase(contender, withSignal) : kind === 'b' ? await threadCase(contender, withSignal) : await abortCase()
    console.log(JSON.stringify(out))
    return
  }
  const rounds = Number(arg('--rounds', '5'))
  const only = arg('--only', 'abc')
  if (!(rounds >= 1) || !/^[abc]+$/.test(only)) {
    console.error('usage: node bench/dispatch/run.mjs [--rounds 5] [--only a|b|c|ab|…]')
    process.exit(2)
  }
  const specs = []
  if (only.includes('a')) for (const s of ['nosignal', 'signal']) for (const c of ['leak-guard', 'p-limit', 'p-queue']) specs.push(`a:${c}:${s}`)
  if (only.includes('b')) for (const s of ['nosignal', 'signal']) for (const c of ['leak-guard', 'piscina']) specs.push(`b:${c}:${s}`)
  if (only.includes('c')) specs.push('c:leak-guard')
  const samples = Object.fromEntries(specs.map((s) => [s, []]))
  const load = () => loadavg().map((l) => l.toFixed(2)).join(' ')
  const loadBefore = load()
  for (let r = 0; r < rounds; r++) {
    // Rotate the order so no contender always runs first (or right after the same one).
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[(i + r) % specs.length]
      samples[spec].push(child(spec))
    }
    process.stderr.write(`round ${r + 1}/${rounds} done (load ${load()})\n`)
  }
  const med = (spec, key) => median(samples[spec].map((s) => s[key]))
  /** Median over rounds of the ratio within each round. */
  const ratio = (a, b, key) => median(samples[a].map((s, r) => s[key] / samples[b][r][key]))
  const fmt = (n) => n.toLocaleString('en-US', { maximumFractionDigits: 0 })
  const x = (n) => `${n.toFixed(2)}×`
  console.log(`Node ${process.version}, ${rounds} rounds, medians; load average (1/5/15 min) ${loadBefore} before, ${load()} after`)
  if (only.includes('a')) {
    for (const [key, unit] of [
      ['opsPerSec', 'tasks per wall-clock second'],
      ['opsPerCpuSec', 'tasks per CPU second'],
    ]) {
      console.log(`\n(a) ${fmt(ASYNC_TASKS)} trivial async tasks, concurrency ${CONCURRENCY}, ${unit}`)
      console.log('| per-task signal | leak-guard | p-limit 7 | p-queue 9 | leak-guard ÷ p-limit | leak-guard ÷ p-queue |')
      console.log('| --- | --- | --- | --- | --- | --- |')
      for (const s of ['nosignal', 'signal']) {
        const [lg, pl, pq] = ['leak-guard', 'p-limit', 'p-queue'].map((c) => `a:${c}:${s}`)
        console.log(`| ${s === 'signal' ? 'yes' : 'no'} | ${fmt(med(lg, key))} | ${fmt(med(pl, key))} | ${fmt(med(pq, key))} | ${x(ratio(lg, pl, key))} | ${x(ratio(lg, pq, key))} |`)
      }
    }
  }
  if (only.includes('b')) {
    console.log(`\n(b) ${fmt(THREAD_TASKS)} trivial tasks on 2 threads, tasks per wall-clock second`)
    console.log('| per-task signal | leak-guard thread pool | raw piscina 5 | ratio |')
    console.log('| --- | --- | --- | --- |')
    for (const s of ['nosignal', 'signal']) {
      const [lg, pi] = [`b:leak-guard:${s}`, `b:piscina:${s}`]
      console.log(`| ${s === 'signal' ? 'yes' : 'no'} | ${fmt(med(lg, 'opsPerSec'))} | ${fmt(med(pi, 'opsPerSec'))} | ${x(ratio(lg, pi, 'opsPerSec'))} |`)
    }
  }
  if (only.includes('c')) {
    console.log(`\n(c) abort of a running busy loop (median of ${ABORT_SAMPLES} aborts per round, then median of rounds)`)
    console.log('| run() rejects after | replacement thread finishes a task after |')
    console.log('| --- | --- |')
    console.log(`| ${med('c:leak-guard', 'rejectMs').toFixed(2)} ms | ${med('c:leak-guard', 'replaceMs').toFixed(1)} ms |`)
  }
}

await main()
