// Incident 4, the caller gave up and the callee did not: each client calls /chain with a deadline
// (`Connect-Timeout-Ms`, as a Connect or gRPC caller sends) and gives up at that deadline. /chain calls a
// downstream service through a hop that does not cancel (lib/callee.mjs), whose work takes longer than
// the caller's deadline. Measured by the downstream service, which timestamps its work: how much of it
// still ran to completion after its caller had been answered 503 or had hung up.
import { setTimeout as sleep } from 'node:timers/promises'
import { ask } from '../lib/processes.mjs'
import { send } from '../lib/clients.mjs'

export const title = 'caller gave up'

let runs = 0

export async function run({ port, callee, profile, side }) {
  const p = profile.callerGaveUp
  const tag = `gave${++runs}`
  await ask(callee, 'reset')
  const gaveUpAt = new Map()
  const answers = []
  const calls = []
  for (let i = 0; i < p.requests; i++) {
    const id = `${tag}-${i}`
    calls.push(
      send(port, `/chain?id=${id}&ms=${p.workMs}`, {
        headers: { 'connect-timeout-ms': String(p.deadline) },
        // The caller's own deadline: it hangs up if nothing came by then (plus slack for a loaded machine).
        leaveAfter: p.deadline + 250,
        onLeave: (at) => gaveUpAt.set(id, at),
      }).then((result) => {
        if (!gaveUpAt.has(id)) gaveUpAt.set(id, Date.now())
        answers.push(result)
      }),
    )
    await sleep(5)
  }
  await Promise.all(calls)
  // The downstream work has had the time to complete (or to stop) once workMs passed.
  await sleep(p.workMs + 300)
  const { work } = await ask(callee, 'stats', { side })
  const mine = work.filter((w) => gaveUpAt.has(w.id))
  const stoppedAfter = mine.filter((w) => w.abortedAt !== undefined).map((w) => w.abortedAt - gaveUpAt.get(w.id))
  return {
    requests: p.requests,
    deadline: p.deadline,
    answered503: answers.filter((a) => a.status === 503).length,
    workStarted: mine.length,
    completedAfterCallerGaveUp: mine.filter((w) => w.completedAt !== undefined && w.completedAt > gaveUpAt.get(w.id)).length,
    stoppedByDeadline: stoppedAfter.length,
    stillRunning: mine.filter((w) => w.completedAt === undefined && w.abortedAt === undefined).length,
    maxStoppedAfterMs: stoppedAfter.length ? Math.max(...stoppedAfter) : undefined,
  }
}

export function problems(result) {
  const found = []
  if (result.completedAfterCallerGaveUp > 0) found.push(`${result.completedAfterCallerGaveUp} downstream calls completed after their caller gave up`)
  if (result.stillRunning > 0) found.push(`${result.stillRunning} downstream calls still running`)
  return found
}

export function rows(u, g) {
  const s = (r) => `${r.completedAfterCallerGaveUp} of ${r.workStarted}`
  const answer = (r) => `${r.answered503} of ${r.requests} answered 503`
  return [
    ['downstream work completed after the caller gave up', s(u), s(g), 'inboundDeadline, createHttpClient deadlineHeader'],
    ['callers answered 503 at their deadline (else they hung up)', answer(u), answer(g), 'Connect-Timeout-Ms honoured'],
  ]
}
