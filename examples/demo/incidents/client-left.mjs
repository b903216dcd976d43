// Incident 2, work that outlives a client who left: each client calls /report (a query plus an audit
// call to the upstream) and hangs up before the answer, like a caller whose own timeout fired. Measured
// by the upstream, which timestamps every piece of work: how much of it still ran to completion after
// its client had left. The guarded side also reports what leak-guard detected as late work.
import { setTimeout as sleep } from 'node:timers/promises'
import { ask } from '../lib/processes.mjs'
import { send } from '../lib/clients.mjs'

export const title = 'client left'

let runs = 0

export async function run({ port, server, upstream, profile }) {
  const p = profile.clientLeft
  const tag = `left${++runs}`
  await ask(upstream, 'reset')
  const before = await ask(server, 'stats')
  const leftAt = new Map()
  const calls = []
  for (let i = 0; i < p.requests; i++) {
    const id = `${tag}-${i}`
    calls.push(send(port, `/report?id=${id}`, { leaveAfter: p.leaveAfter, onLeave: (at) => leftAt.set(id, at) }))
    await sleep(5)
  }
  await Promise.all(calls)
  // Wait until the upstream has nothing running (bounded), then past the guard's leak grace period.
  const deadline = performance.now() + p.settleWithin
  while (performance.now() < deadline && (await ask(upstream, 'stats')).counters.running > 0) await sleep(50)
  await sleep(profile.guard.leakGracePeriod + 100)
  const { counters, work } = await ask(upstream, 'stats', { withWork: true })
  const after = await ask(server, 'stats')
  const mine = work.filter((w) => leftAt.has(w.id))
  return {
    requests: p.requests,
    clientsLeft: leftAt.size,
    workStarted: mine.length,
    completedAfterLeft: mine.filter((w) => w.completedAt !== undefined && w.completedAt > leftAt.get(w.id)).length,
    abortedByUpstream: mine.filter((w) => w.abortedAt !== undefined).length,
    stillRunning: counters.running,
    lateWorkDetected: after.stats === undefined ? undefined : after.leaks - before.leaks,
    lateWorkByKind: after.stats === undefined ? undefined : difference(after.leakKinds, before.leakKinds),
  }
}

function difference(after, before) {
  const out = {}
  for (const [kind, n] of Object.entries(after)) if (n - (before[kind] ?? 0) > 0) out[kind] = n - (before[kind] ?? 0)
  return out
}

export function problems(result) {
  const found = []
  if (result.completedAfterLeft > 0) found.push(`${result.completedAfterLeft} upstream calls completed after their client left`)
  if (result.stillRunning > 0) found.push(`${result.stillRunning} upstream calls still running`)
  if (result.lateWorkDetected > 0) found.push(`${result.lateWorkDetected} pieces of late work detected`)
  return found
}

export function rows(u, g, uses) {
  const s = (r) => `${r.completedAfterLeft} of ${r.workStarted}`
  const detected = (r) => {
    if (r.lateWorkDetected === undefined) return '— (nothing watches)'
    const kinds = Object.entries(r.lateWorkByKind).map(([kind, n]) => `${kind} ${n}`)
    return kinds.length ? `${r.lateWorkDetected} (${kinds.join(', ')})` : String(r.lateWorkDetected)
  }
  return [
    ['upstream work completed after client left', s(u), s(g), `scope.signal, scope.spawn, ${uses.outgoing}`],
    ['late work detected', detected(u), detected(g), 'guard leak events'],
  ]
}
