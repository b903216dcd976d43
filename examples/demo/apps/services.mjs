// What the demo's routes do, written once for the three frameworks. The unguarded services follow the
// incidents' patterns (fire-and-forget work, calls that ignore a caller who left, the default outgoing
// client with bodies left unread, CPU work on the event loop); the guarded ones use leak-guard. The
// framework files only map routes onto these functions and hand over the request's scope.
import { core, pieces } from '../lib/pieces.mjs'
import { renderMetrics } from './cpu.mjs'

const workerFile = new URL('./cpu-worker.mjs', import.meta.url)

export function createServices({ guarded, upstream, callee, profile }) {
  const url = (kind, id, ms) => `${upstream}/work?kind=${kind}&id=${encodeURIComponent(id ?? '')}&ms=${ms}`
  const { queryMs } = profile.clientLeft
  const { upstreamMs } = profile.pool
  const { cpuMs } = profile.cpu

  if (!guarded) {
    return {
      uses: {},
      async report(id) {
        // Incident 2: the audit call is fired and forgotten, and neither call hears that the client left.
        fetch(url('audit', id, queryMs)).then((res) => res.arrayBuffer(), () => {}).catch(() => {})
        const res = await fetch(url('query', id, queryMs))
        const { rows } = await res.json()
        return { id, rows: rows.length }
      },
      async proxy(id) {
        // Incident 3: the global client (no per-origin limit) and a body nobody reads.
        const res = await fetch(url('proxy', id, upstreamMs))
        return { id, upstreamStatus: res.status }
      },
      metrics() {
        return renderMetrics(cpuMs)
      },
      async longExport(id, _scope, ms) {
        const res = await fetch(url('export', id, ms))
        await res.arrayBuffer()
        return { id, exported: true }
      },
      async chain(id, _scope, ms) {
        // Incident 4: the caller's deadline header is ignored and nothing is passed on downstream.
        const res = await fetch(`${callee}/work?id=${encodeURIComponent(id)}&ms=${ms}`)
        return { id, downstream: res.status }
      },
      attach() {},
      async close() {},
    }
  }

  let client
  let pool
  const uses = {
    // Before the bounded client lands, guarded calls still carry the request's signal (global fetch).
    outgoing: pieces.createHttpClient ? 'createHttpClient' : 'fetch + scope.signal',
    cpu: pieces.createThreadPool ? 'createThreadPool' : undefined,
  }
  const get = (target, signal) => (client ? client.fetch(target, { signal }) : fetch(target, { signal }))

  return {
    uses,
    /** Creates the client and the pool once the app's guard exists, so shutdown closes them. */
    attach(guard) {
      if (pieces.createHttpClient) client = core.createHttpClient({ connections: profile.pool.connections, guard })
      if (pieces.createThreadPool) pool = core.createThreadPool({ filename: workerFile, threads: profile.cpu.threads, maxQueue: profile.cpu.maxQueue, guard })
    },
    async report(id, scope) {
      // Background work belongs to the request: aborted when it ends, reported if it outlives it.
      scope.spawn((signal) => get(url('audit', id, queryMs), signal).then((res) => res.arrayBuffer()))
      const res = await get(url('query', id, queryMs), scope.signal)
      const { rows } = await res.json()
      return { id, rows: rows.length }
    },
    async proxy(id, scope) {
      const res = await get(url('proxy', id, upstreamMs), scope.signal)
      await res.arrayBuffer()
      return { id, upstreamStatus: res.status }
    },
    metrics(scope) {
      if (!pool) throw new Error('createThreadPool is not in this build of @leak-guard/core')
      return pool.run({ ms: cpuMs }, { signal: scope.signal })
    },
    async longExport(id, scope, ms) {
      const res = await get(url('export', id, ms), scope.signal)
      await res.arrayBuffer()
      return { id, exported: true }
    },
    async chain(id, scope, ms) {
      // The guard took the caller's Connect-Timeout-Ms as this request's deadline; the client sends what
      // is left of it downstream, so the callee stops with the caller even through a hop that does not cancel.
      const res = await get(`${callee}/work?id=${encodeURIComponent(id)}&ms=${ms}`, scope.signal)
      await res.arrayBuffer()
      return { id, downstream: res.status }
    },
    async close() {
      await Promise.all([client?.close(), pool?.close()])
    },
  }
}
