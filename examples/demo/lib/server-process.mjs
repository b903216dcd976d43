// Child process that runs one demo app: `node server-process.mjs <framework> <unguarded|guarded> <json>`.
// It listens on 127.0.0.1, reports its port over IPC, answers `stats` requests, and shuts down on SIGTERM
// the way its side does: unguarded with the usual hand-written `server.close()`, guarded with leak-guard.
import { core, pieces } from './pieces.mjs'
import { createServices } from '../apps/services.mjs'

const [framework, side, json] = process.argv.slice(2)
const { upstream, callee, profile } = JSON.parse(json)
const guarded = side === 'guarded'

const services = createServices({ guarded, upstream, callee: callee[side], profile })
const { build } = await import(`../apps/${framework}.mjs`)
const guardOptions = process.env.LEAK_GUARD_DEMO_DEBUG ? { ...profile.guard, captureStacks: true } : profile.guard
// Fastify's plugin creates the graceful shutdown itself from these options; the others get createShutdown below.
const shutdownOptions = { gracePeriod: profile.shutdown.grace, forceAfter: profile.shutdown.hardDeadline }
const app = await build({ guarded, services, guardOptions, shutdownOptions })
const { server, guard } = app

const leaks = []
const uses = { ...services.uses }
if (guard) {
  guard.on('leak', (event) => {
    leaks.push({ kind: event.kind, url: event.url, reason: event.reason })
    if (process.env.LEAK_GUARD_DEMO_DEBUG) console.error('leak', event)
  })
  services.attach(guard)
  if (pieces.hardenServer) {
    core.hardenServer(server, profile.harden)
    uses.server = 'hardenServer'
  } else {
    // Node's own settings, which hardenServer applies, until it is in the build.
    server.headersTimeout = profile.harden.headersTimeout
    server.requestTimeout = profile.harden.requestTimeout
    server.keepAliveTimeout = profile.harden.keepAliveTimeout
    server.connectionsCheckingInterval = profile.harden.connectionsCheckingInterval
    uses.server = 'Node server settings'
  }
}
// The same connection budget on both sides: it stands in for the file-descriptor limit.
server.maxConnections = profile.connectionBudget

const port = await app.listen()

let stopping
if (guard && pieces.createShutdown) {
  if (!app.ownsShutdown) core.createShutdown(server, { guard, ...shutdownOptions })
  uses.shutdown = app.ownsShutdown ? 'createShutdown (plugin option)' : 'createShutdown'
  stopping = () => guard.shutdown()
} else if (guard) {
  uses.shutdown = 'guard.beginShutdown + abortAll'
  stopping = () =>
    new Promise((resolve) => {
      guard.beginShutdown()
      const grace = setTimeout(() => guard.abortAll(), profile.shutdown.grace)
      const force = setTimeout(() => server.closeAllConnections(), profile.shutdown.hardDeadline)
      server.close(() => {
        clearTimeout(grace)
        clearTimeout(force)
        resolve()
      })
      server.closeIdleConnections()
    })
} else {
  // The common hand-written "graceful" shutdown: stop accepting, wait for the server to close.
  stopping = () => app.close()
}

process.once('SIGTERM', async () => {
  await stopping()
  await services.close()
  if (!guard) process.exit(0)
  // The guarded process is not told to exit: with the IPC channel closed it ends by itself once
  // nothing is left running. Anything leaked (a socket, a timer, a thread) keeps it alive, and the demo
  // then counts a shutdown that did not finish.
  process.disconnect()
})

process.on('message', (message) => {
  if (message?.type === 'stats') {
    process.send({ id: message.id, stats: guard?.stats(), leaks: leaks.length, leakKinds: tally(leaks.map((l) => l.kind)) })
  }
})

function tally(values) {
  const counts = {}
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1
  return counts
}

process.send({ type: 'ready', port, uses })
