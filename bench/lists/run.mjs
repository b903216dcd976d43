#!/usr/bin/env node
// Would one shared intrusive-list class cost the per-request path? Every request joins and leaves two
// intrusive lists today: the guard's registry of live scopes (scope/guard.ts, links under kLivePrev /
// kLiveNext) and the deadline list of the default timeout (timeout/deadline-list.ts, kPrev / kNext), each
// written out by hand with its link keys as constants. A shared utility must take its link keys as
// parameters (a scope is in both lists at once, a pool task in two more), so the same property-access
// sites then see several keys.
//
// Variants, each in a fresh child process, rounds interleaved (order alternating), median over rounds:
//   hand     two hand-written lists with constant keys (as today)
//   generic-2  one IntrusiveList class, instantiated with the registry's and the deadline list's keys
//   generic-4  the same, warmed first with the two key pairs a fair queue would add (its access sites then
//              see four keys, as they would once every list uses it)
// Per simulated request: a scope-like object is created, joins both lists, and 50 requests later (the
// overhead benchmark's 50 connections) leaves both, oldest first.
//
//   node bench/lists/run.mjs [--rounds 9] [--requests 2000000]
import { spawnSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { argReader, median } from '../lib.mjs'

const self = fileURLToPath(import.meta.url)
const args = process.argv.slice(2)
const arg = argReader(args)

const kLivePrev = Symbol('live.prev')
const kLiveNext = Symbol('live.next')
const kPrev = Symbol('deadline.prev')
const kNext = Symbol('deadline.next')
const kList = Symbol('deadline.list')
const kDeadline = Symbol('deadline')
const kAgePrev = Symbol('age.prev')
const kAgeNext = Symbol('age.next')
const kQPrev = Symbol('queue.prev')
const kQNext = Symbol('queue.next')

// A stand-in for RequestScope: a few fields, all links declared in the constructor (one hidden class).
class Scope {
  constructor(id) {
    this.id = id
    this.state = 'running'
    this.deadline = id
    this[kLivePrev] = undefined
    this[kLiveNext] = undefined
    this[kPrev] = undefined
    this[kNext] = undefined
    this[kList] = undefined
    this[kDeadline] = 0
  }
}

// --- today's shape: each list written out with constant keys -------------------------------------
class Registry {
  oldest = undefined
  newest = undefined
  size = 0
  add(scope) {
    const newest = this.newest
    scope[kLivePrev] = newest
    if (newest === undefined) this.oldest = scope
    else newest[kLiveNext] = scope
    this.newest = scope
    this.size++
  }
  remove(scope) {
    const prev = scope[kLivePrev]
    const next = scope[kLiveNext]
    if (prev === undefined) {
      if (this.oldest !== scope) return
      this.oldest = next
    } else prev[kLiveNext] = next
    if (next === undefined) this.newest = prev
    else next[kLivePrev] = prev
    scope[kLivePrev] = scope[kLiveNext] = undefined
    this.size--
  }
}
class DeadlineList {
  head = undefined
  tail = undefined
  add(entry, start) {
    const tail = this.tail
    entry[kDeadline] = start + 30_000
    entry[kList] = this
    entry[kPrev] = tail
    entry[kNext] = undefined
    if (tail === undefined) this.head = entry
    else tail[kNext] = entry
    this.tail = entry
  }
  remove(entry) {
    if (entry[kList] !== this) return
    const prev = entry[kPrev]
    const next = entry[kNext]
    if (prev === undefined) this.head = next
    else prev[kNext] = next
    if (next === undefined) this.tail = prev
    else next[kPrev] = prev
    entry[kList] = entry[kPrev] = entry[kNext] = undefined
  }
}

// --- one shared utility: link keys are parameters --------------------------------------------------
class IntrusiveList {
  head = undefined
  tail = undefined
  size = 0
  #prev
  #next
  constructor(prev, next) {
    this.#prev = prev
    this.#next = next
  }
  push(entry) {
    const tail = this.tail
    entry[this.#prev] = tail
    entry[this.#next] = undefined
    if (tail === undefined) this.head = entry
    else tail[this.#next] = entry
    this.tail = entry
    this.size++
  }
  /** False when `entry` is not in this list. */
  remove(entry) {
    const prev = entry[this.#prev]
    const next = entry[this.#next]
    if (prev === undefined) {
      if (this.head !== entry) return false
      this.head = next
    } else prev[this.#next] = next
    if (next === undefined) this.tail = prev
    else next[this.#prev] = prev
    entry[this.#prev] = entry[this.#next] = undefined
    this.size--
    return true
  }
}

const IN_FLIGHT = 50

function runHand(n) {
  const registry = new Registry()
  const deadlines = new DeadlineList()
  const ring = new Array(IN_FLIGHT)
  for (let i = 0; i < n; i++) {
    const scope = new Scope(i)
    registry.add(scope)
    deadlines.add(scope, i)
    const slot = i % IN_FLIGHT
    const old = ring[slot]
    if (old !== undefined) {
      deadlines.remove(old)
      registry.remove(old)
    }
    ring[slot] = scope
  }
  return registry.size
}

function runGeneric(n) {
  const registry = new IntrusiveList(kLivePrev, kLiveNext)
  const deadlines = new IntrusiveList(kPrev, kNext)
  const ring = new Array(IN_FLIGHT)
  for (let i = 0; i < n; i++) {
    const scope = new Scope(i)
    registry.push(scope)
    scope[kDeadline] = i + 30_000
    scope[kList] = deadlines
    deadlines.push(scope)
    const slot = i % IN_FLIGHT
    const old = ring[slot]
    if (old !== undefined) {
      if (old[kList] === deadlines) {
        deadlines.remove(old)
        old[kList] = undefined
      }
      registry.remove(old)
    }
    ring[slot] = scope
  }
  return registry.size
}

/** What a fair queue on the same class would do to its access sites: two more key pairs, other objects. */
function warmOtherUsers() {
  const queue = new IntrusiveList(kQPrev, kQNext)
  const age = new IntrusiveList(kAgePrev, kAgeNext)
  for (let i = 0; i < 200_000; i++) {
    const task = { id: i, [kQPrev]: undefined, [kQNext]: undefined, [kAgePrev]: undefined, [kAgeNext]: undefined }
    queue.push(task)
    age.push(task)
    if (queue.size > 16) {
      const head = queue.head
      queue.remove(head)
      age.remove(head)
    }
  }
}

if (args[0] === '--child') {
  const variant = args[1]
  const n = Number(args[2])
  if (variant === 'generic-4') warmOtherUsers()
  const run = variant === 'hand' ? runHand : runGeneric
  run(200_000) // warm-up
  const samples = []
  for (let b = 0; b < 3; b++) {
    const c = process.cpuUsage()
    run(n)
    const used = process.cpuUsage(c)
    samples.push(((used.user + used.system) * 1000) / n) // ns of CPU per request
  }
  process.stdout.write(JSON.stringify({ ns: median(samples) }))
  process.exit(0)
}

const rounds = Number(arg('--rounds', '9'))
const n = arg('--requests', '2000000')
const variants = ['hand', 'generic-2', 'generic-4']
const loads = [loadavg()[0]]
const results = Object.fromEntries(variants.map((v) => [v, []]))
for (let r = 0; r < rounds; r++) {
  // Rotate the order from round to round.
  const order = variants.map((_, i) => variants[(i + r) % variants.length])
  for (const variant of order) {
    const out = spawnSync(process.execPath, [self, '--child', variant, n], { encoding: 'utf8' })
    if (out.status !== 0) throw new Error(out.stderr)
    results[variant].push(JSON.parse(out.stdout).ns)
  }
  loads.push(loadavg()[0])
}
console.log(`Node ${process.version}, ${rounds} rounds × ${n} requests, load average (1 min) ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`)
console.log('')
console.log('| variant | CPU ns per request (create + join + leave both lists), median | min–max | − hand, per-round median (min–max) |')
console.log('| --- | ---: | ---: | ---: |')
for (const v of variants) {
  const diffs = results.hand.map((h, i) => results[v][i] - h)
  const diff = v === 'hand' ? '—' : `${median(diffs).toFixed(1)} (${Math.min(...diffs).toFixed(1)}–${Math.max(...diffs).toFixed(1)})`
  console.log(`| ${v} | ${median(results[v]).toFixed(1)} | ${Math.min(...results[v]).toFixed(1)}–${Math.max(...results[v]).toFixed(1)} | ${diff} |`)
}
