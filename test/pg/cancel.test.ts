import { expect } from 'chai'
import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { createShutdown, type LeakEvent } from '@leak-guard/core'
import { guardPool } from '@leak-guard/pg'
import { rawSocket, rawRequest, send } from '../helpers/http.js'
import { activeWith, type App, frameworks, poolFor, startApp, usePgTest, waitActive, waitGone } from './apps.js'

describe('@leak-guard/pg: cancellation reaches PostgreSQL', () => {
  const suite = usePgTest()
  const { db, cleanup } = suite
  let seq = 0
  const tag = (label: string): string => `${label}-${process.pid}-${++seq}`

  function pool(options?: Parameters<typeof guardPool>[1], guarded = true): pg.Pool {
    const p = poolFor(db)
    cleanup.push(() => (p.ending ? undefined : p.end()))
    return guarded ? guardPool(p, options) : p
  }

  async function app(framework: (typeof frameworks)[number], p: pg.Pool, options = { timeout: 200 }): Promise<App> {
    const a = await startApp(framework, options, p)
    cleanup.push(() => a.close())
    return a
  }

  for (const framework of frameworks) {
    describe(`${framework}: a 200 ms route deadline with SELECT pg_sleep(30)`, () => {
      it('answers 503 with LG_ERR_TIMEOUT and the query is gone from pg_stat_activity right after', async () => {
        const p = pool()
        const a = await app(framework, p)
        const t = tag(`${framework}-timeout`)
        const reply = await send(a.port, { path: `/work/${t}` })
        expect(reply.status).to.equal(503)
        expect(reply.body).to.match(/LG_ERR_TIMEOUT|timed out/) // Koa renders the message
        // At the deadline, not early, and nowhere near the 30 s the query asked for (bound wide for a loaded machine).
        expect(reply.elapsed).to.be.within(190, 3_000)
        const gone = await waitGone(suite.watch, t)
        console.log(`      ${framework}: 503 after ${Math.round(reply.elapsed)} ms, pg_sleep gone ${Math.round(gone)} ms after the 503`)
        expect(gone, 'pg_sleep still active 2 s after the 503').to.be.at.least(0)
        // The connection a cancel was sent for was destroyed, not returned.
        expect(p.totalCount).to.equal(0)
        expect((await p.query('SELECT 1 AS one')).rows[0].one).to.equal(1)
      })

      it('cancels the query when the client disconnects mid-query', async () => {
        const p = pool()
        const a = await app(framework, p, { timeout: 30_000 })
        const t = tag(`${framework}-gone`)
        const socket = await rawSocket(a.port, rawRequest('GET', `/work/${t}`, t))
        expect(await waitActive(suite.watch, t), 'the query never started').to.equal(true)
        socket.destroy()
        const gone = await waitGone(suite.watch, t)
        console.log(`      ${framework}: pg_sleep gone ${Math.round(gone)} ms after the disconnect`)
        expect(gone, 'pg_sleep still active 2 s after the client left').to.be.at.least(0)
      })

      it('cancels the query at the shutdown grace period, answers 503 and ends the pool', async () => {
        const p = poolFor(db)
        cleanup.push(() => (p.ending ? undefined : p.end()))
        const a = await startApp(framework, { timeout: 30_000 }, p)
        guardPool(p, { guard: a.guard })
        cleanup.push(() => a.close())
        const t = tag(`${framework}-shutdown`)
        const pending = send(a.port, { path: `/work/${t}` })
        expect(await waitActive(suite.watch, t), 'the query never started').to.equal(true)
        const shutdown = createShutdown(a.server, { guard: a.guard, gracePeriod: 200, forceAfter: 2_000, handleSignals: false })
        const closed = shutdown.close()
        const reply = await pending
        expect(reply.status).to.equal(503)
        expect(reply.body).to.match(/LG_ERR_SHUTDOWN|shutting down/)
        expect(await waitGone(suite.watch, t), 'pg_sleep still active 2 s after the shutdown answer').to.be.at.least(0)
        await closed
        expect(p.ended, 'the registered pool was not ended by the shutdown').to.equal(true)
      })
    })
  }

  describe('without guardPool (the control)', () => {
    it('answers 503 but the query is still active in PostgreSQL 5 s later', async function () {
      this.timeout(20_000)
      const p = pool(undefined, false)
      const a = await app('express', p)
      const t = tag('unguarded')
      const reply = await send(a.port, { path: `/work/${t}` })
      expect(reply.status).to.equal(503)
      await sleep(5_000)
      expect(await activeWith(suite.watch, t), 'the unguarded query should still run').to.equal(1)
      // Stop it for the next tests.
      await suite.watch.query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", [`/* ${t} */`])
    })
  })

  describe('observability', () => {
    it('lists a running query under its request in guard.snapshot()', async () => {
      const p = pool()
      const a = await app('express', p, { timeout: 30_000 })
      const t = tag('snapshot')
      const socket = await rawSocket(a.port, rawRequest('GET', `/work/${t}`, t))
      expect(await waitActive(suite.watch, t)).to.equal(true)
      const snapshot = a.guard.snapshot()
      const scope = snapshot.scopes.find((s) => s.url === `/work/${t}`)
      expect(scope, 'request missing from the snapshot').to.not.equal(undefined)
      expect(scope!.tasks).to.have.length(1)
      expect(scope!.tasks[0]!.kind).to.equal('query')
      expect(scope!.tasks[0]!.label).to.equal(`SELECT pg_sleep(30) /* ${t} */`)
      socket.destroy()
      expect(await waitGone(suite.watch, t)).to.be.at.least(0)
    })

    it("reports a query still running after its request ended as a 'leak' of kind 'query' (cancel: false)", async () => {
      const p = pool({ cancel: false, statementTimeout: false })
      const a = await startApp('express', { timeout: 200, leakGracePeriod: 200 }, p)
      cleanup.push(() => a.close())
      const leaks: LeakEvent[] = []
      a.guard.on('leak', (event: LeakEvent) => leaks.push(event))
      const t = tag('leak')
      const reply = await send(a.port, { path: `/work/${t}` })
      expect(reply.status).to.equal(503)
      await sleep(600)
      expect(await activeWith(suite.watch, t), 'without cancel the query keeps running').to.equal(1)
      expect(leaks.map((l) => [l.kind, l.reason])).to.deep.equal([['query', 'LG_ERR_TIMEOUT']])
      await suite.watch.query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", [`/* ${t} */`])
    })
  })
})
