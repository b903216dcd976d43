#!/usr/bin/env node
// Overhead of leak-guard on hello-world servers, against the bare framework and its usual timeout peer.
//
// Every (framework, variant) server runs in its own child process forked with this same Node binary.
// autocannon loads one server at a time from this process over 127.0.0.1; the server measures its own
// CPU time (process.cpuUsage(), user + system) over the run and divides it by the requests it served.
// Round r runs every variant once: frameworks in rotated order, and within a framework its variants in
// rotated order, so a framework's variants run back to back and drift in background load hits all of
// them alike. Figures are medians over the rounds; a ratio is the median of the per-round ratios to the
// bare framework measured in the same round.
//
// By default autocannon saturates the server; `--rate N` sends a fixed N requests/s instead, so every
// variant serves the same load (CPU per request then does not depend on how many requests the event
// loop batches per tick, which changes with throughput).
//
//   node bench/overhead/run.mjs [--rounds 5] [--duration 3] [--warmup 1] [--connections 50] [--rate N]
//                               [--frameworks express,koa,fastify] [--variants bare,lg-signal,...] [--json]
//                               [--node 22|24|26]   (runs itself on that Node line: scripts/node-lines.mjs)
import { fork } from 'node:child_process'
import { once } from 'node:events'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { onNodeLine } from '../../scripts/node-lines.mjs'

const allFrameworks = ['express', 'koa', 'fastify']
const allVariants = ['bare', 'bare-signal', 'lg-nocontext', 'lg-default', 'lg-signal', 'lg-deadline', 'peer']
// lg-deadline: every request carries a caller's deadline (earlier than the 30 s local one), so each
// request parses it and its scope gets a timer of its own instead of the guard's shared deadline list.
const variantHeaders = { 'lg-deadline': { 'connect-timeout-ms': '20000' } }
const peerName = { express: 'connect-timeout', koa: 'koa-timeout-v2', fastify: 'handlerTimeout' }
const label = (framework, variant) =>
  ({
    bare: 'bare',
    'bare-signal': 'bare + `new AbortController()` read per request (reference)',
    'lg-nocontext': 'leak-guard `context: false`',
    'lg-default': 'leak-guard default',
    'lg-signal': 'leak-guard default + signal read',
    'lg-deadline': 'leak-guard default + signal read, `Connect-Timeout-Ms: 20000` on every request',
    peer: `${peerName[framework]} (peer)`,
  })[variant]

function parseArgs(argv) {
  const out = { rounds: 5, duration: 3, warmup: 1, connections: 50, rate: undefined, frameworks: allFrameworks, variants: allVariants, json: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${a} needs a value`)
      return v
    }
    const number = (min) => {
      const n = Number(value())
      if (!Number.isFinite(n) || n < min) throw new Error(`${a} must be a number >= ${min}`)
      return n
    }
    if (a === '--rounds') out.rounds = Math.trunc(number(1))
    else if (a === '--duration') out.duration = number(0.5)
    else if (a === '--warmup') out.warmup = number(0)
    else if (a === '--connections') out.connections = Math.trunc(number(1))
    else if (a === '--rate') out.rate = Math.trunc(number(1))
    else if (a === '--frameworks') out.frameworks = list(value(), allFrameworks, a)
    else if (a === '--variants') out.variants = list(value(), allVariants, a)
    else if (a === '--json') out.json = true
    else if (a === '--help' || a === '-h') {
      console.log('node bench/overhead/run.mjs [--rounds 5] [--duration 3] [--warmup 1] [--connections 50] [--rate req/s] [--frameworks express,koa,fastify] [--variants bare,bare-signal,lg-nocontext,lg-default,lg-signal,lg-deadline,peer] [--json] [--node 22|24|26]')
      process.exit(0)
    } else throw new Error(`unknown argument ${a}`)
  }
  if (!out.variants.includes('bare')) out.variants = ['bare', ...out.variants]
  return out
}

function list(text, allowed, name) {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean)
  for (const item of items) if (!allowed.includes(item)) throw new Error(`${name}: unknown ${item} (one of ${allowed.join(', ')})`)
  return allowed.filter((x) => items.includes(x))
}

let opts
try {
  opts = parseArgs(onNodeLine(import.meta.url))
} catch (error) {
  console.error(`${error.message}\nnode bench/overhead/run.mjs --help`)
  process.exit(2)
}
const here = dirname(fileURLToPath(import.meta.url))
// Progress goes to stderr so stdout is only the table (or the JSON).
const log = (...a) => console.error(...a)

function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function rotate(items, by) {
  const k = ((by % items.length) + items.length) % items.length
  return [...items.slice(k), ...items.slice(0, k)]
}

class Server {
  constructor(framework, variant) {
    this.framework = framework
    this.variant = variant
    this.closing = false
    this.ready = this.#start(3)
  }
  /**
   * Forks the server and waits for its port. A start can fail when the workspace packages are being
   * rebuilt at that moment (half-written dist files): it is retried.
   */
  async #start(attempts) {
    for (let attempt = 1; ; attempt++) {
      const child = fork(join(here, 'server.mjs'), [this.framework, this.variant], {
        execPath: process.execPath,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      const started = await Promise.race([
        once(child, 'message').then(([m]) => m),
        once(child, 'exit').then(() => undefined),
      ])
      if (started !== undefined) {
        this.child = child
        this.port = started.port
        child.on('exit', (code) => {
          if (!this.closing) {
            console.error(`server ${this.framework}/${this.variant} exited with ${code}`)
            process.exit(1)
          }
        })
        return
      }
      if (attempt >= attempts) throw new Error(`server ${this.framework}/${this.variant} did not start`)
      log(`server ${this.framework}/${this.variant} failed to start, retrying`)
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
  async ask(type, reply) {
    const answer = new Promise((resolve) => {
      const onMessage = (m) => {
        if (m.type !== reply) return
        this.child.off('message', onMessage)
        resolve(m)
      }
      this.child.on('message', onMessage)
    })
    this.child.send({ type })
    return answer
  }
  async close() {
    this.closing = true
    this.child.send({ type: 'exit' })
    await Promise.race([once(this.child, 'exit'), new Promise((r) => setTimeout(r, 2000).unref())])
    if (this.child.exitCode === null) this.child.kill()
  }
}

function load(port, seconds, headers) {
  return autocannon({
    url: `http://127.0.0.1:${port}/`,
    ...(headers === undefined ? {} : { headers }),
    connections: opts.connections,
    pipelining: 1,
    duration: seconds,
    ...(opts.rate === undefined ? {} : { overallRate: opts.rate }),
  })
}

async function measure(server, seconds) {
  await server.ask('start', 'started')
  const result = await load(server.port, seconds, variantHeaders[server.variant])
  const stats = await server.ask('stop', 'stopped')
  const bad = result.errors + result.timeouts + result.non2xx
  if (bad > 0) log(`  warning: ${server.framework}/${server.variant}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx`)
  return {
    cpuPerReq: stats.requests > 0 ? stats.cpuMicros / stats.requests : NaN,
    reqPerSec: result.requests.total / result.duration,
    requests: stats.requests,
    bad,
  }
}

const servers = new Map()
for (const f of opts.frameworks) for (const v of opts.variants) servers.set(`${f}/${v}`, new Server(f, v))
try {
  await Promise.all([...servers.values()].map((s) => s.ready))
} catch (error) {
  console.error(error.message)
  for (const s of servers.values()) s.child?.kill()
  process.exit(1)
}

const started = Date.now()
const load1 = os.loadavg()
log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${load1.map((x) => x.toFixed(2)).join(' ')}`)
log(`${servers.size} servers, ${opts.rounds} rounds x ${opts.duration} s, ${opts.connections} connections${opts.rate ? `, ${opts.rate} req/s` : ''}, warm-up ${opts.warmup} s each`)

if (opts.warmup > 0) {
  for (const s of servers.values()) await load(s.port, opts.warmup, variantHeaders[s.variant])
}

const samples = new Map([...servers.keys()].map((k) => [k, []]))
for (let r = 0; r < opts.rounds; r++) {
  for (const f of rotate(opts.frameworks, r)) {
    for (const v of rotate(opts.variants, r)) {
      const key = `${f}/${v}`
      const m = await measure(servers.get(key), opts.duration)
      samples.get(key).push(m)
    }
  }
  log(`round ${r + 1}/${opts.rounds} done (${Math.round((Date.now() - started) / 1000)} s)`)
}
await Promise.all([...servers.values()].map((s) => s.close()))
const load2 = os.loadavg()

const results = []
for (const f of opts.frameworks) {
  const base = samples.get(`${f}/bare`)
  for (const v of opts.variants) {
    const s = samples.get(`${f}/${v}`)
    const cpuRatios = s.map((m, i) => m.cpuPerReq / base[i].cpuPerReq)
    const rpsRatios = s.map((m, i) => m.reqPerSec / base[i].reqPerSec)
    results.push({
      framework: f,
      variant: v,
      label: label(f, v),
      cpuPerReq: median(s.map((m) => m.cpuPerReq)),
      cpuRatio: median(cpuRatios),
      cpuRatioMin: Math.min(...cpuRatios),
      cpuRatioMax: Math.max(...cpuRatios),
      reqPerSec: median(s.map((m) => m.reqPerSec)),
      rpsRatio: median(rpsRatios),
      bad: s.reduce((n, m) => n + m.bad, 0),
      rounds: s,
    })
  }
}

const get = (f, v) => results.find((x) => x.framework === f && x.variant === v)
const major = Number(process.versions.node.split('.')[0])
// The overhead goal (issue 15), on the Node lines users run: Fastify default + signal read ≤ 1.05× bare
// and ≤ Fastify's own handlerTimeout with request.signal read; Koa and Express default + signal read ≤
// their usual timeout middleware, all in the same run (CPU per request, median of per-round ratios). On
// Node 20 (end of life) only `context: false` ≤ 1.15× bare Fastify: a real AbortSignal per request costs
// microseconds there (bare-signal shows it), which no signal-handing variant can avoid.
const budgets = []
const check = (framework, variant, limit, note) => {
  const r = get(framework, variant)
  if (r !== undefined) budgets.push({ what: `${framework} ${r.label} × bare`, ratio: r.cpuRatio, limit, pass: limit === undefined ? undefined : r.cpuRatio <= limit, note })
}
const versusPeer = (framework) => {
  const lg = get(framework, 'lg-signal')
  const peer = get(framework, 'peer')
  if (lg === undefined || peer === undefined) return
  // Per round, leak-guard's CPU/request over the peer's; the median of those, with its range.
  const ratios = lg.rounds.map((m, i) => m.cpuPerReq / peer.rounds[i].cpuPerReq)
  budgets.push({
    what: `${framework} leak-guard default + signal read vs ${peerName[framework]}`,
    ratio: median(ratios),
    min: Math.min(...ratios),
    max: Math.max(...ratios),
    limit: 1,
    pass: median(ratios) <= 1,
    note: `goal on Node ${major}`,
  })
}
if (major >= 22) {
  check('fastify', 'lg-signal', 1.05, `goal on Node ${major}`)
  for (const f of opts.frameworks) versusPeer(f)
} else {
  check('fastify', 'lg-nocontext', 1.15, 'goal on Node 20')
  check('fastify', 'lg-signal', undefined, 'reference on Node 20: no goal, see bare-signal')
}
check('fastify', 'peer', undefined, 'reference: Fastify 5.8+ handlerTimeout with request.signal read')
for (const f of opts.frameworks) check(f, 'bare-signal', undefined, 'reference: one AbortSignal per request alone')

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  loadavgBefore: load1,
  loadavgAfter: load2,
  rounds: opts.rounds,
  duration: opts.duration,
  warmup: opts.warmup,
  connections: opts.connections,
  rate: opts.rate ?? 'saturating',
  seconds: Math.round((Date.now() - started) / 1000),
}

if (opts.json) {
  console.log(JSON.stringify({ meta, results, budgets }, null, 2))
} else {
  const f1 = (x) => x.toFixed(1)
  const f2 = (x) => x.toFixed(2)
  const lines = []
  lines.push(`Node ${meta.node}, ${meta.cpus} CPUs (${meta.cpuModel}), ${meta.date}`)
  lines.push(`${meta.rounds} rounds x ${meta.duration} s (after ${meta.warmup} s warm-up), ${meta.connections} connections, pipelining 1, ${opts.rate ? `fixed ${opts.rate} req/s` : 'saturating'}; load average before ${load1.map(f2).join(' ')}, after ${load2.map(f2).join(' ')}; ${meta.seconds} s`)
  lines.push('')
  lines.push('| framework | variant | CPU µs/req | × bare (min–max) | req/s | × bare |')
  lines.push('|---|---|---:|---:|---:|---:|')
  for (const r of results) {
    const flag = r.bad > 0 ? ` ⚠ ${r.bad} failed` : ''
    lines.push(`| ${r.framework} | ${r.label}${flag} | ${f1(r.cpuPerReq)} | ${f2(r.cpuRatio)} (${f2(r.cpuRatioMin)}–${f2(r.cpuRatioMax)}) | ${Math.round(r.reqPerSec)} | ${f2(r.rpsRatio)} |`)
  }
  if (budgets.length > 0) {
    lines.push('')
    lines.push('| check (CPU/request) | ratio | limit | result |')
    lines.push('|---|---:|---:|---|')
    for (const b of budgets) {
      const range = b.min === undefined ? '' : ` (${f2(b.min)}–${f2(b.max)})`
      lines.push(`| ${b.what} (${b.note}) | ${f2(b.ratio)}${range} | ${b.limit === undefined ? '—' : `≤ ${f2(b.limit)}`} | ${b.pass === undefined ? '—' : b.pass ? 'met' : 'not met'} |`)
    }
  }
  console.log(lines.join('\n'))
}
