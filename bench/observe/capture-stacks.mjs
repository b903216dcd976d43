#!/usr/bin/env node
// Cost of `captureStacks: true`, in µs per operation, against the same operation with it off.
//   node bench/observe/capture-stacks.mjs            (after `node scripts/build.mjs`)
// Measures, in-process and without sockets so the figures are not drowned by HTTP noise:
//   request  — a request scope begun and ended (what every request pays; stacks change nothing here)
//   spawn    — a request scope that runs one `scope.spawn()` task (stack captured per spawn)
//   outgoing — an outgoing call seen on `undici:request:create` from inside a live scope, published
//              30 frames deep like a real fetch() from a handler (deep stack capture + filtering)
// and, for the default path, what a request pays with `createMetrics()` attached (one histogram
// observation at its end; prom-client is core's dev dependency) against none.
import { EventEmitter } from 'node:events'
import { channel } from 'node:diagnostics_channel'
import { createGuard, createMetrics } from '@leak-guard/core'

const ROUNDS = 11
const N = Number(process.env.N ?? 20_000)

function fakeExchange(i) {
  const req = { method: 'GET', url: `/items/${i}`, headers: {} }
  const res = new EventEmitter()
  res.writableFinished = true
  res.writableEnded = true
  res.headersSent = true
  return { req, res }
}

const create = channel('undici:request:create')

function deep(n, fn) {
  return n === 0 ? fn() : deep(n - 1, fn) + 0
}

const cases = {
  request(guard, i) {
    const { req, res } = fakeExchange(i)
    guard.begin(req, res, undefined, undefined, false)
    res.emit('close')
  },
  spawn(guard, i) {
    const { req, res } = fakeExchange(i)
    const scope = guard.begin(req, res, undefined, undefined, false)
    scope.spawn(() => undefined)
    res.emit('close')
  },
  outgoing(guard, i) {
    const { req, res } = fakeExchange(i)
    const scope = guard.begin(req, res, undefined, undefined, false)
    const request = { method: 'GET', origin: 'http://127.0.0.1:1', path: `/up/${i}` }
    scope.run(() => deep(30, () => (create.publish({ request }), 0)))
    channel('undici:request:trailers').publish({ request })
    res.emit('close')
  },
}

async function round(guard, run) {
  // CPU time of this process, not wall time: other processes on a busy machine do not count.
  const start = process.cpuUsage()
  for (let i = 0; i < N; i++) run(guard, i)
  const used = process.cpuUsage(start)
  const us = (used.user + used.system) / N
  // Let spawned promises settle and the scopes be collected between rounds.
  await new Promise((resolve) => setImmediate(resolve))
  return us
}

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]

// Off and on alternate round by round so that load from other processes hits both alike.
async function measure(name) {
  const off = createGuard({ captureStacks: false, timeout: false, leakGracePeriod: 60_000 })
  const on = createGuard({ captureStacks: true, timeout: false, leakGracePeriod: 60_000 })
  const run = cases[name]
  for (let i = 0; i < 3_000; i++) {
    run(off, i)
    run(on, i)
  }
  const offs = []
  const ons = []
  for (let r = 0; r < ROUNDS; r++) {
    offs.push(await round(off, run))
    ons.push(await round(on, run))
  }
  off.dispose()
  on.dispose()
  return [median(offs), median(ons)]
}

console.log(`node ${process.version}, N=${N} per round, median of ${ROUNDS} rounds (CPU µs per operation)`)
console.log('| operation | captureStacks: false | captureStacks: true | cost of stacks |')
console.log('|---|---|---|---|')
for (const name of Object.keys(cases)) {
  const [off, on] = await measure(name)
  console.log(`| ${name} | ${off.toFixed(2)} | ${on.toFixed(2)} | +${(on - off).toFixed(2)} |`)
}

// Per-request cost of an attached metrics object (no stacks involved).
{
  const plain = createGuard({ timeout: false })
  const metered = createGuard({ timeout: false })
  const metrics = await createMetrics(metered, { eventLoopDelay: false })
  for (let i = 0; i < 3_000; i++) {
    cases.request(plain, i)
    cases.request(metered, i)
  }
  const a = []
  const b = []
  for (let r = 0; r < ROUNDS; r++) {
    a.push(await round(plain, cases.request))
    b.push(await round(metered, cases.request))
  }
  metrics.close()
  plain.dispose()
  metered.dispose()
  const [x, y] = [median(a), median(b)]
  console.log(`| request, no metrics → createMetrics() attached | ${x.toFixed(2)} | ${y.toFixed(2)} | +${(y - x).toFixed(2)} |`)
}
