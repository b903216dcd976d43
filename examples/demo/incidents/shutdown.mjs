// Shutdown during a rolling restart: keep-alive clients keep calling a short /export while a few long
// exports are in flight, then the server gets SIGTERM. Measured: the time from SIGTERM until the process
// exited (the demo kills it at the cap, as Kubernetes would after terminationGracePeriodSeconds), and
// how the requests ended. A request "failed" when it was sent and got no answer (reset or no response);
// a GET that went out on an idle keep-alive socket just as the server closed it is retried once, as
// Node's docs and Go's client do, on both sides alike;
// a refused connection after the port closed is not counted: a load balancer retries it elsewhere.
import { Agent } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { kill, waitForExit } from '../lib/processes.mjs'
import { send, tally } from '../lib/clients.mjs'

export const title = 'shutdown'

const noAnswer = new Set(['ECONNRESET', 'EPIPE', 'TIMEOUT', 'socket hang up'])

export async function run({ port, child, profile }) {
  const p = profile.shutdown
  const agents = Array.from({ length: p.keepAliveClients }, () => new Agent({ keepAlive: true, maxSockets: 1 }))
  let exited = false
  const keepAlive = agents.map(async (agent, i) => {
    const results = []
    for (let n = 0; !exited; n++) {
      const path = `/export?id=ka${i}-${n}&ms=${p.requestMs}`
      let r = await send(port, path, { agent, timeout: p.cap + 2_000 })
      if (r.reused && noAnswer.has(r.error)) {
        // The idle keep-alive socket was closed as this GET went out: retry once, as real clients do.
        r = { ...(await send(port, path, { agent, timeout: p.cap + 2_000 })), retried: true }
      }
      results.push(r)
      if (r.error === 'ECONNREFUSED') break // the instance is gone; the client goes elsewhere
    }
    return results
  })
  const long = Array.from({ length: p.longRequests }, (_, i) => send(port, `/export?id=long${i}&ms=${p.longMs}`, { timeout: p.cap + 2_000 }))
  try {
    await sleep(p.signalAfter)
    child.kill('SIGTERM')
    const exit = await waitForExit(child, p.cap)
    exited = true
    if (exit === undefined) await kill(child)
    const results = [...(await Promise.all(keepAlive)).flat(), ...(await Promise.all(long))]
    const count = (pred) => results.filter(pred).length
    return {
      closeMs: exit?.ms,
      killedAt: exit === undefined ? p.cap : undefined,
      exitCode: exit?.code,
      requests: count((r) => r.error !== 'ECONNREFUSED'),
      ok: count((r) => r.status === 200),
      shed503: count((r) => r.status === 503),
      failed: count((r) => noAnswer.has(r.error) || (r.status >= 500 && r.status !== 503)),
      refusedAfterClose: count((r) => r.error === 'ECONNREFUSED'),
      retried: count((r) => r.retried === true),
      outcomes: tally(results),
      long: (await Promise.all(long)).map((r) => r.error ?? r.status),
    }
  } finally {
    exited = true
    for (const a of agents) a.destroy()
  }
}

export function problems(result) {
  const found = []
  if (result.killedAt !== undefined) found.push(`did not exit within ${result.killedAt / 1000} s of SIGTERM`)
  if (result.failed > 0) found.push(`${result.failed} requests failed during shutdown`)
  return found
}

export function rows(u, g, uses) {
  const time = (r) => (r.killedAt !== undefined ? `> ${(r.killedAt / 1000).toFixed(1)} s (killed)` : `${(r.closeMs / 1000).toFixed(2)} s`)
  const failed = (r) => `${r.failed} of ${r.requests}` + (r.shed503 ? ` (+${r.shed503} 503)` : '') + (r.retried ? ` (${r.retried} retried)` : '')
  return [
    ['time to close with in-flight keep-alive requests', time(u), time(g), uses.shutdown],
    ['requests failed (reset or no answer)', failed(u), failed(g), ''],
  ]
}
