// Incident 3, the unbounded outgoing pool and the handler that blocks. First a burst of /proxy calls,
// each making one upstream call: the upstream counts the sockets opened to it. Then /metrics (CPU-heavy)
// is hammered by a few concurrent scrapers while a probe calls the light /health route at a steady pace:
// the probe's p99 latency shows whether the event loop stayed responsive.
import { Agent } from 'node:http'
import { ask } from '../lib/processes.mjs'
import { batch, every, loop, percentile, send } from '../lib/clients.mjs'

export const title = 'pool and CPU'

export async function run({ port, upstream, profile, side, uses }) {
  const result = { pool: undefined, cpu: undefined }
  const agents = []
  const agent = (maxSockets) => {
    const a = new Agent({ keepAlive: true, maxSockets })
    agents.push(a)
    return a
  }
  try {
    if (side === 'unguarded' || uses.outgoing === 'createHttpClient') {
      const p = profile.pool
      await ask(upstream, 'reset')
      const proxyAgent = agent(p.concurrency)
      const calls = await batch(p.requests, p.concurrency, (i) => send(port, `/proxy?id=p${i}`, { agent: proxyAgent }))
      const { counters } = await ask(upstream, 'stats')
      result.pool = {
        requests: p.requests,
        ok: calls.filter((c) => c.status === 200).length,
        socketsOpened: counters.socketsOpened,
        socketsPeak: counters.socketsPeak,
        limit: side === 'guarded' ? p.connections : undefined,
      }
    }
    if (side === 'unguarded' || uses.cpu !== undefined) {
      const p = profile.cpu
      const hammerAgent = agent(p.concurrency)
      const probeAgent = agent(1)
      const until = performance.now() + p.window
      const [scrapes, probes] = await Promise.all([
        // A scraper that got 503 waits a little before it tries again.
        loop(() => send(port, '/metrics', { agent: hammerAgent, timeout: 10_000 }), { concurrency: p.concurrency, until, pauseAfter: (r) => (r.status === 503 ? 10 : 0) }),
        every(p.probeEvery, () => send(port, '/health', { agent: probeAgent }), { until }),
      ])
      const latencies = probes.filter((r) => r.status === 200).map((r) => r.ms)
      result.cpu = {
        scrapes: scrapes.length,
        served: scrapes.filter((r) => r.status === 200).length,
        shed: scrapes.filter((r) => r.status === 503 && r.headers['retry-after'] !== undefined).length,
        probes: probes.length,
        probeP50: percentile(latencies, 50),
        probeP99: percentile(latencies, 99),
        probeFailed: probes.length - latencies.length,
      }
    }
    return result
  } finally {
    for (const a of agents) a.destroy()
  }
}

export function problems(result) {
  const found = []
  const pool = result.pool
  if (pool !== undefined && pool.limit !== undefined && pool.socketsPeak > pool.limit) found.push(`${pool.socketsPeak} sockets open to the upstream at once, above the limit of ${pool.limit}`)
  return found
}

const pending = (piece, issue) => `not measured: ${piece} (${issue}) is not in this build`

export function rows(u, g, uses) {
  const ms = (v) => (v === undefined ? '—' : `${v.toFixed(1)} ms`)
  const sockets = (pool) => `${pool.socketsPeak} (${pool.socketsOpened} opened)`
  return [
    ['peak sockets open to the upstream', sockets(u.pool), g.pool ? sockets(g.pool) : pending('createHttpClient', 'issue 5'), uses.outgoing === 'createHttpClient' ? 'createHttpClient' : ''],
    ['p99 of /health while /metrics is hammered', ms(u.cpu.probeP99), g.cpu ? ms(g.cpu.probeP99) : pending('createThreadPool', 'issue 3'), uses.cpu ?? ''],
    ['/metrics scrapes shed with 503', `${u.cpu.shed} of ${u.cpu.scrapes}`, g.cpu ? `${g.cpu.shed} of ${g.cpu.scrapes}` : '—', ''],
  ]
}
