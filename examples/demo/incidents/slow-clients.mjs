// Incident 1, the slow client: attackers open connections, send half a request (or the headers and then
// a body one byte at a time) and trickle the rest, while well-behaved clients keep calling /health on
// fresh connections. Measured from the clients' side: attacker sockets the server still holds at the
// end of the window, and how many well-behaved calls were answered.
import { setTimeout as sleep } from 'node:timers/promises'
import { every, send, trickle } from '../lib/clients.mjs'

export const title = 'slow clients'

export async function run({ port, profile }) {
  const p = profile.slowClients
  const attackers = Array.from({ length: p.attackers }, (_, i) => trickle(port, i % 2 === 0 ? 'headers' : 'body', p.trickleEvery))
  try {
    await Promise.all(attackers.map((a) => a.ready))
    await sleep(100) // let the server accept them all before the well-behaved clients arrive
    const until = performance.now() + p.window
    const heldAtEnd = sleep(p.window).then(() => ({
      headers: attackers.filter((a, i) => i % 2 === 0 && !a.closed).length,
      body: attackers.filter((a, i) => i % 2 === 1 && !a.closed).length,
    }))
    const calls = await every(p.wellBehavedEvery, () => send(port, '/health', { timeout: p.answerTimeout }), { until })
    const held = await heldAtEnd
    return {
      window: p.window,
      attackers: attackers.length,
      held: held.headers + held.body,
      heldTrickleHeaders: held.headers,
      heldTrickleBody: held.body,
      wellBehaved: calls.length,
      answered: calls.filter((c) => c.status === 200).length,
    }
  } finally {
    for (const a of attackers) a.stop()
    await sleep(50)
  }
}

/** Anything the guarded side must not show. */
export function problems(result) {
  return result.held > 0 ? [`${result.held} slow-client sockets still held after ${result.window / 1000} s`] : []
}

export function rows(u, g, uses) {
  const s = (r) => `${r.held} of ${r.attackers}`
  return [
    [`sockets held by slow clients after ${u.window / 1000} s`, s(u), s(g), uses.server],
    ['answers to well-behaved clients', `${u.answered} of ${u.wellBehaved}`, `${g.answered} of ${g.wellBehaved}`, ''],
  ]
}
