#!/usr/bin/env node
// The floor every per-request AbortSignal pays: `new AbortController()` and a read of its `signal`
// (`.signal.aborted`), per Node line. Each measurement runs in a fresh child process; rounds interleave
// the lines (the order rotates each round) and each figure is the median of the rounds. Within a child:
// a warm-up batch, then BATCHES timed batches of N operations, median ns per operation. The last 64
// controllers stay referenced (a ring, like 64 requests in flight), so each one lives past its creation
// and the garbage collector's share of the cost is counted as in a server.
//
//   node bench/signal/run.mjs [--rounds 5] [--n 200000] [--lines 20,22,24,26]
import { spawnSync } from 'node:child_process'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { allLines, nodeBinary } from '../../scripts/node-lines.mjs'
import { argReader, median } from '../lib.mjs'

const BATCHES = 5
const RING = 64

function child(n) {
  const ring = new Array(RING)
  const batch = (count) => {
    const t0 = process.hrtime.bigint()
    let aborted = 0
    for (let i = 0; i < count; i++) {
      const controller = new AbortController()
      if (controller.signal.aborted) aborted++
      ring[i & (RING - 1)] = controller
    }
    const ns = Number(process.hrtime.bigint() - t0)
    if (aborted !== 0) throw new Error('unreachable')
    return ns / count
  }
  batch(n)
  const times = Array.from({ length: BATCHES }, () => batch(n)).sort((a, b) => a - b)
  console.log(JSON.stringify({ version: process.version, nsPerOp: times[BATCHES >> 1] }))
}

const args = process.argv.slice(2)
const arg = argReader(args)
const n = Number(arg('--n', 200_000))
if (args.includes('--child')) {
  child(n)
} else {
  const rounds = Number(arg('--rounds', 5))
  const lines = arg('--lines', allLines.join(',')).split(',').map(Number)
  const binaries = new Map(lines.map((major) => [major, nodeBinary(major)]))
  const samples = new Map(lines.map((major) => [major, []]))
  const versions = new Map()
  const load1 = os.loadavg()
  for (let r = 0; r < rounds; r++) {
    const order = [...lines.slice(r % lines.length), ...lines.slice(0, r % lines.length)]
    for (const major of order) {
      const result = spawnSync(binaries.get(major), [fileURLToPath(import.meta.url), '--child', '--n', String(n)], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
      if (result.status !== 0) throw new Error(`Node ${major}: ${result.stderr}`)
      const m = JSON.parse(result.stdout)
      versions.set(major, m.version)
      samples.get(major).push(m.nsPerOp)
    }
  }
  const load2 = os.loadavg()
  const f2 = (x) => x.toFixed(2)
  console.log(`${new Date().toISOString()}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model}), ${rounds} rounds x ${BATCHES} batches x ${n} ops; load average before ${load1.map(f2).join(' ')}, after ${load2.map(f2).join(' ')}`)
  console.log('')
  console.log('| Node | `new AbortController()` + `signal.aborted`, µs/op (median) | min–max of rounds |')
  console.log('|---|---:|---:|')
  for (const major of lines) {
    const s = samples.get(major)
    console.log(`| ${versions.get(major)} | ${(median(s) / 1000).toFixed(3)} | ${(Math.min(...s) / 1000).toFixed(3)}–${(Math.max(...s) / 1000).toFixed(3)} |`)
  }
}
