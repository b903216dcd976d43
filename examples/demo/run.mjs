#!/usr/bin/env node
// leak-guard incident replay: runs the incidents of INCIDENTS.md against Express, Koa and Fastify, each
// unguarded (framework defaults and the incident's pattern) and guarded (leak-guard), with real sockets
// on 127.0.0.1, a real upstream service in a child process, and real concurrency. Every figure in the
// tables is measured during the run.
//
//   node examples/demo/run.mjs [--short] [--json] [--framework express,koa,fastify] [--parallel | --no-parallel]
//
// Exits 1 when the guarded side leaks (or fails a request during shutdown), 2 on a demo error.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { kill, killAll, killChildrenOnSignals, running, start } from './lib/processes.mjs'
import { pieces, pieceIssue } from './lib/pieces.mjs'
import { profiles } from './lib/profile.mjs'
import { renderTable } from './lib/table.mjs'
import * as slowClients from './incidents/slow-clients.mjs'
import * as clientLeft from './incidents/client-left.mjs'
import * as poolAndCpu from './incidents/pool-and-cpu.mjs'
import * as callerGaveUp from './incidents/caller-gave-up.mjs'
import * as shutdown from './incidents/shutdown.mjs'

const incidents = [
  ['1 slow clients', 'slowClients', slowClients],
  ['2 client left', 'clientLeft', clientLeft],
  ['3 pool and CPU', 'poolAndCpu', poolAndCpu],
  ['4 caller gave up', 'callerGaveUp', callerGaveUp],
  ['shutdown', 'shutdown', shutdown],
]
const frameworks = { express: 'express', koa: 'koa', fastify: 'fastify' }

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    short: { type: 'boolean', default: process.env.LEAK_GUARD_DEMO_SHORT === '1' },
    json: { type: 'boolean', default: false },
    framework: { type: 'string', default: Object.keys(frameworks).join(',') },
    // Frameworks side by side, each with its own upstream: quicker, but they share the CPU, so latency
    // figures are not comparable with a sequential run, and on a loaded machine tight deadlines slip.
    parallel: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log('usage: node examples/demo/run.mjs [--short] [--json] [--framework express,koa,fastify] [--parallel | --no-parallel]')
  process.exit(0)
}
const selected = args.framework.split(',').map((f) => f.trim())
for (const f of selected) {
  if (!(f in frameworks)) {
    console.error(`unknown framework "${f}"; expected some of ${Object.keys(frameworks).join(', ')}`)
    process.exit(2)
  }
}
const profile = args.short ? profiles.short : profiles.full
const serverFile = fileURLToPath(new URL('./lib/server-process.mjs', import.meta.url))
const upstreamFile = fileURLToPath(new URL('./lib/upstream.mjs', import.meta.url))
const calleeFile = fileURLToPath(new URL('./lib/callee.mjs', import.meta.url))
const require = createRequire(import.meta.url)
const version = (name) => require(`${name}/package.json`).version

const progress = (text) => process.stderr.write(`${text}\n`)
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`

killChildrenOnSignals()
const runStarted = performance.now()
const report = { node: process.version, mode: args.short ? 'short' : 'full', parallel: args.parallel, profile, pieces, frameworks: {}, problems: [], unguardedLeaks: [] }
let failure

try {
  progress(`leak-guard incident replay (${report.mode} mode, Node ${process.version}); pieces in this build: ${describePieces()}`)
  for (const framework of selected) report.frameworks[framework] = { version: version(framework), sides: {} }
  if (args.parallel) await Promise.all(selected.map(replay))
  else for (const framework of selected) await replay(framework)
} catch (error) {
  failure = error
} finally {
  await killAll()
}
report.durationMs = Math.round(performance.now() - runStarted)
report.childrenLeft = running()

if (failure) {
  console.error(`demo failed: ${failure.stack ?? failure}`)
  process.exit(2)
}

if (args.json) {
  console.log(JSON.stringify(report, null, 2))
} else {
  for (const [framework, entry] of Object.entries(report.frameworks)) {
    const { unguarded: u, guarded: g } = entry.sides
    const uses = g.uses
    const sections = incidents.map(([label, key, incident]) => ({ label, rows: incident.rows(u[key], g[key], uses) }))
    console.log()
    console.log(renderTable(`${framework} ${entry.version}`, ['incident', 'measured', 'unguarded', 'guarded', 'guarded side uses'], sections))
  }
  console.log()
  for (const line of notes()) console.log(line)
  console.log()
  console.log(`unguarded: ${report.unguardedLeaks.length} problems found (expected: that is the point).`)
  if (report.problems.length === 0) console.log(`guarded: no leaked work, no failed requests.`)
  else console.log(`guarded: ${report.problems.length} PROBLEMS:\n  ${report.problems.join('\n  ')}`)
  console.log(`finished in ${seconds(report.durationMs)}; child processes left running: ${report.childrenLeft}`)
}
process.exit(report.problems.length > 0 || report.childrenLeft > 0 ? 1 : 0)

/** Both sides of one framework, each in a fresh server process, against the framework's own upstream. */
async function replay(framework) {
  const entry = report.frameworks[framework]
  const upstream = await start(upstreamFile)
  const callee = await start(calleeFile)
  const startServer = (side) => start(serverFile, [framework, side, JSON.stringify({ upstream: upstream.url, callee: callee.hops, profile })])
  let nextServer = startServer('unguarded')
  for (const side of ['unguarded', 'guarded']) {
    const server = await nextServer
    const results = (entry.sides[side] = { uses: server.uses })
    for (const [label, key, incident] of incidents) {
      // The guarded server starts while the unguarded one shuts down (which needs no CPU).
      if (key === 'shutdown' && side === 'unguarded') nextServer = startServer('guarded')
      const t = performance.now()
      progress(`  ${framework.padEnd(7)} ${side.padEnd(9)} ${label} …`)
      results[key] = await incident.run({ port: server.port, server: server.child, child: server.child, upstream: upstream.child, callee: callee.child, profile, side, uses: server.uses })
      const found = incident.problems(results[key])
      progress(`  ${framework.padEnd(7)} ${side.padEnd(9)} ${label} done in ${seconds(performance.now() - t)}${found.length ? ` — ${found.join('; ')}` : ''}`)
      for (const problem of found) (side === 'guarded' ? report.problems : report.unguardedLeaks).push(`${framework} ${label}: ${problem}`)
    }
  }
  await kill(upstream.child)
  await kill(callee.child)
}

function describePieces() {
  return Object.entries(pieces)
    .map(([name, ok]) => `${name} ${ok ? 'yes' : `no (${pieceIssue[name]})`}`)
    .join(', ')
}

function notes() {
  const p = profile
  const lines = [
    'How it was measured:',
    `  1: ${p.slowClients.attackers} attackers (half trickle headers, half a body) hold connections; both sides have the same budget of ${p.connectionBudget} connections`,
    `     (server.maxConnections, standing in for the fd limit). Well-behaved clients call /health every ${p.slowClients.wellBehavedEvery} ms on new connections.`,
    `     Guarded deadlines are scaled down for the demo: headers ${p.harden.headersTimeout} ms, request ${p.harden.requestTimeout} ms.`,
    `  2: ${p.clientLeft.requests} clients call /report (a ${p.clientLeft.queryMs} ms query + an audit call) and hang up after ${p.clientLeft.leaveAfter} ms; the upstream timestamps each call.`,
    `  3: ${p.pool.requests} /proxy calls, ${p.pool.concurrency} at once; then ${p.cpu.concurrency} scrapers hammer /metrics (${p.cpu.cpuMs} ms of CPU each) for ${seconds(p.cpu.window)}`,
    `     while a probe calls /health every ${p.cpu.probeEvery} ms. Guarded pool: ${p.cpu.threads} thread, queue ${p.cpu.maxQueue}; client: ${p.pool.connections} connections.`,
    `  4: ${p.callerGaveUp.requests} clients call /chain with Connect-Timeout-Ms: ${p.callerGaveUp.deadline} and give up at that deadline; /chain calls a downstream service`,
    `     (${p.callerGaveUp.workMs} ms of work; local deadline 30 s) through a hop that does not cancel, as a balancer with proxy_ignore_client_abort would.`,
    `  shutdown: ${p.shutdown.keepAliveClients} keep-alive clients and ${p.shutdown.longRequests} long (${seconds(p.shutdown.longMs)}) exports in flight, SIGTERM after ${p.shutdown.signalAfter} ms;`,
    `     unguarded: server.close() then exit; guarded: grace ${p.shutdown.grace} ms, force at ${p.shutdown.hardDeadline} ms. The demo kills a server still up after ${seconds(p.shutdown.cap)}.`,
  ]
  if (args.parallel) lines.push('The frameworks ran side by side (--parallel): latencies are not comparable with a sequential run.')
  const missing = Object.entries(pieces).filter(([, ok]) => !ok)
  if (missing.length > 0) {
    lines.push('Not yet in this build of @leak-guard/core (rows that need them say "not measured"):')
    for (const [name] of missing) lines.push(`  ${name} (${pieceIssue[name]})`)
  }
  return lines
}
