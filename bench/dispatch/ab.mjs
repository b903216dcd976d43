#!/usr/bin/env node
// A/B of two builds of @leak-guard/core's dispatcher, for refactors that must not cost throughput.
// Every measurement runs in a fresh child process; rounds alternate the builds (A B, then B A, ...);
// each child times 3 batches after a warm-up and reports their median; the table shows medians over
// rounds and the median of the per-round ratios B ÷ A (min–max in brackets).
//
//   cp -r packages/core/dist packages/core/.before/      # before the change (keep it inside packages/core,
//                                                         # so piscina/undici resolve from its node_modules)
//   node scripts/build.mjs                                # after the change
//   node bench/dispatch/ab.mjs --a packages/core/.before/dist/esm/index.js --b packages/core/dist/esm/index.js --rounds 7
//
// Cases (200,000 trivial async tasks, concurrency 16, all submitted at once so nearly all of them queue):
//   plain    run(fn)
//   signal   run(fn, { signal }) with a fresh AbortController per task
//   fair     run(fn, { scope }) from 100 request-like scopes, maxPerRequest 4 (groups and the round-robin ring)
import { spawnSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { argReader, median, timedBatches } from '../lib.mjs'

const self = fileURLToPath(import.meta.url)
const args = process.argv.slice(2)
const arg = argReader(args)
const TASKS = 200_000
const CONCURRENCY = 16
const BATCHES = 3

if (args[0] === '--child') {
  const [, entry, kase] = args
  const { createDispatcher } = await import(pathToFileURL(entry).href)
  const noop = async () => {}
  let submit
  if (kase === 'fair') {
    const d = createDispatcher({ concurrency: CONCURRENCY, maxQueue: false, maxPerRequest: 4 })
    // Request-like scopes: what the pool reads of a RequestScope (never aborted here).
    const signal = new AbortController().signal
    const scopes = Array.from({ length: 100 }, () => ({ aborted: false, reason: undefined, signal, onAbort: () => () => {} }))
    submit = (i) => d.run(noop, { scope: scopes[i % 100] })
  } else {
    const d = createDispatcher({ concurrency: CONCURRENCY, maxQueue: false })
    submit = kase === 'signal' ? () => d.run(noop, { signal: new AbortController().signal }) : () => d.run(noop)
  }
  const { opsPerSec, opsPerCpuSec } = await timedBatches(submit, 20_000, TASKS, BATCHES)
  process.stdout.write(JSON.stringify({ wall: opsPerSec, cpu: opsPerCpuSec }))
  process.exit(0)
}

const builds = { A: resolve(arg('--a')), B: resolve(arg('--b')) }
const rounds = Number(arg('--rounds', '5'))
const cases = (arg('--cases', 'plain,signal,fair')).split(',')
const loads = [loadavg()[0]]
const results = {}
for (let r = 0; r < rounds; r++) {
  for (const kase of cases) {
    const order = r % 2 === 0 ? ['A', 'B'] : ['B', 'A']
    for (const build of order) {
      const out = spawnSync(process.execPath, [self, '--child', builds[build], kase], { encoding: 'utf8' })
      if (out.status !== 0) throw new Error(out.stderr)
      ;((results[kase] ??= { A: [], B: [] })[build]).push(JSON.parse(out.stdout))
    }
  }
  loads.push(loadavg()[0])
  process.stderr.write(`round ${r + 1}/${rounds} done (load ${loadavg()[0].toFixed(2)})\n`)
}
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const ratio = (xs) => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`
console.log(`Node ${process.version}, ${rounds} rounds, load average (1 min) ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`)
console.log(`A = ${arg('--a')}\nB = ${arg('--b')}\n`)
console.log('| case | A tasks/s wall | B tasks/s wall | B ÷ A wall | B ÷ A CPU |')
console.log('| --- | --- | --- | --- | --- |')
for (const kase of cases) {
  const { A, B } = results[kase]
  const wallRatios = A.map((a, i) => B[i].wall / a.wall)
  const cpuRatios = A.map((a, i) => B[i].cpu / a.cpu)
  console.log(`| ${kase} | ${fmt(median(A.map((x) => x.wall)))} | ${fmt(median(B.map((x) => x.wall)))} | ${ratio(wallRatios)} | ${ratio(cpuRatios)} |`)
}
