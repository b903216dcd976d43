import { expect } from 'chai'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { createGuard, type Guard } from '@leak-guard/core'
import { guardPool } from '@leak-guard/pg'
import { send } from '../helpers/http.js'
import { idleInTransaction, poolFor, serveCore, usePgTest, waitActive } from './apps.js'

/** Milliseconds of `SHOW statement_timeout`'s answer ('0', '250ms', '1s', '1250ms', ...). */
function ms(value: string): number {
  const match = /^(\d+)\s*(ms|s|min)?$/.exec(value)
  if (match === null) throw new Error(`unexpected statement_timeout ${value}`)
  const n = Number(match[1])
  return match[2] === 's' ? n * 1000 : match[2] === 'min' ? n * 60_000 : n
}

async function show(q: { query: pg.Pool['query'] } | pg.PoolClient): Promise<number> {
  const { rows } = await (q as pg.Pool).query<{ statement_timeout: string }>('SHOW statement_timeout')
  return ms(rows[0]!.statement_timeout)
}

describe('@leak-guard/pg: guardPool()', () => {
  const suite = usePgTest()
  const { db, cleanup } = suite
  let guard: Guard

  before(async () => {
    await suite.watch.query('CREATE TABLE IF NOT EXISTS marks (id serial PRIMARY KEY, label text NOT NULL)')
  })
  beforeEach(async () => {
    guard = createGuard({ timeout: 1_000 })
    await suite.watch.query('TRUNCATE marks')
  })

  function pool(extra: pg.PoolConfig = {}, options?: Parameters<typeof guardPool>[1]): pg.Pool {
    const p = guardPool(poolFor(db, extra), options)
    cleanup.push(() => (p.ending ? undefined : p.end()))
    return p
  }

  async function serve(handler: Parameters<typeof serveCore>[1]): Promise<number> {
    const server = await serveCore(guard, handler)
    cleanup.push(() => server.close())
    return server.port
  }

  describe('options', () => {
    const cases: Array<[string, unknown]> = [
      ['statementTimeout: 0', { statementTimeout: 0 }],
      ["statementTimeout: 'always'", { statementTimeout: 'always' }],
      ['cancel: 1', { cancel: 1 }],
      ['a guard without register()', { guard: {} }],
      ['an unknown option', { statement_timeout: 1 }],
    ]
    for (const [label, options] of cases) {
      it(`throws LG_ERR_INVALID_OPTION for ${label}`, () => {
        const p = new pg.Pool()
        expect(() => guardPool(p, options as never))
          .to.throw()
          .with.property('code', 'LG_ERR_INVALID_OPTION')
      })
    }

    it('throws LG_ERR_INVALID_OPTION for something that is not a pool, and for a pool guarded twice', () => {
      expect(() => guardPool({} as never)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
      const p = guardPool(new pg.Pool())
      expect(() => guardPool(p)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    })
  })

  describe('outside a request', () => {
    it('adds nothing to the query path: clients keep node-postgres’s own query()', async () => {
      const p = pool({ max: 2 })
      const client = await p.connect()
      try {
        expect(client.query).to.equal(pg.Client.prototype.query)
        expect(await show(client)).to.equal(0)
      } finally {
        client.release()
      }
      expect((await p.query('SELECT 2 AS two')).rows[0].two).to.equal(2)
    })
  })

  describe('statement_timeout', () => {
    it("sets the request's remaining time (plus at most its slack) and never leaks it to a user outside requests", async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => show(p))
      const reply = await send(port, { path: '/' })
      expect(reply.status).to.equal(200)
      const value = Number(reply.body)
      expect(value).to.be.within(800, 1_000 + 125)
      expect(await show(p), 'the request’s statement_timeout leaked to the next user').to.equal(0)
    })

    it('keeps a value already set when it fits, so the next request on the connection sends no SET', async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => {
        const { rows } = await p.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
        return { pid: rows[0]!.pid, timeout: await show(p) }
      })
      const first = JSON.parse((await send(port, { path: '/' })).body)
      const second = JSON.parse((await send(port, { path: '/' })).body)
      expect(second.pid).to.equal(first.pid)
      expect(second.timeout, 'the value set by the first request was replaced').to.equal(first.timeout)
    })

    it('resets it for a request without a deadline', async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => show(p))
      expect(Number((await send(port, { path: '/' })).body)).to.be.above(0)
      expect(Number((await send(port, { path: '/', headers: { 'x-timeout': 'false' } })).body)).to.equal(0)
    })

    it('uses SET LOCAL inside a transaction, so a ROLLBACK leaves no value behind for the next user', async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => {
        const client = await p.connect()
        try {
          await client.query('BEGIN')
          const inside = await show(client)
          await client.query('ROLLBACK')
          return inside
        } finally {
          client.release()
        }
      })
      expect(Number((await send(port, { path: '/' })).body)).to.be.above(0)
      expect(await show(p)).to.equal(0)
    })

    it('survives a ROLLBACK that restores the value set before BEGIN: a user outside requests still gets the default', async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => {
        await p.query('SELECT 1') // session SET on the connection
        const client = await p.connect()
        try {
          await client.query('BEGIN')
          await client.query('SET statement_timeout = 1') // the app's own, undone by the ROLLBACK
          await client.query('ROLLBACK')
        } finally {
          client.release()
        }
        return 'ok'
      })
      expect((await send(port, { path: '/' })).status).to.equal(200)
      expect(await show(p)).to.equal(0)
      expect((await p.query('SELECT pg_sleep(0.05), 1 AS one')).rows[0].one).to.equal(1)
    })

    it("rejects with the request's LG_ERR_TIMEOUT (cause: the server's 57014) when PostgreSQL's statement_timeout fires before the guard's timer runs", async () => {
      const p = pool({ max: 1 }, { cancel: false })
      let failure: (Error & { code?: string; cause?: { code?: string } }) | undefined
      const port = await serve(async () => {
        // Block the event loop across the deadline from a timer callback: PostgreSQL's error is read in
        // the poll phase that follows, before the guard's deadline timer gets its turn.
        setTimeout(() => {
          const until = performance.now() + 500
          while (performance.now() < until);
        }, 150).unref()
        try {
          return await p.query('SELECT pg_sleep(5)')
        } catch (error) {
          failure = error as typeof failure
          throw error
        }
      })
      const reply = await send(port, { path: '/', headers: { 'x-timeout': '300' } })
      expect(reply.status).to.equal(503)
      expect(failure?.code).to.equal('LG_ERR_TIMEOUT')
      expect(failure?.cause?.code).to.equal('57014')
    })
  })

  describe('checkout', () => {
    it('drops a request waiting for a connection when it aborts: it never checks one out and its query never runs', async () => {
      const p = pool({ max: 1 })
      const held = await p.connect()
      const port = await serve(async () => p.query("INSERT INTO marks (label) VALUES ('late')"))
      const reply = await send(port, { path: '/', headers: { 'x-timeout': '200' } })
      expect(reply.status).to.equal(503)
      expect(JSON.parse(reply.body).code).to.equal('LG_ERR_TIMEOUT')
      expect(p.waitingCount).to.equal(0)
      held.release()
      await sleep(50)
      expect(p.idleCount).to.equal(1)
      expect((await suite.watch.query('SELECT count(*)::int AS n FROM marks')).rows[0].n).to.equal(0)
    })
  })

  describe('transactions', () => {
    it('rolls back a client released in a transaction before it returns to the pool', async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => {
        const client = await p.connect()
        await client.query('BEGIN')
        await client.query("INSERT INTO marks (label) VALUES ('uncommitted')")
        client.release()
        return 'ok'
      })
      expect((await send(port, { path: '/' })).status).to.equal(200)
      expect(await idleInTransaction(suite.watch)).to.equal(0)
      expect((await suite.watch.query('SELECT count(*)::int AS n FROM marks')).rows[0].n).to.equal(0)
      expect(p.idleCount).to.equal(1)
    })

    it('rolls back at once a transaction left idle when its request aborts, releasing its locks before the app releases the client', async () => {
      const p = pool({ max: 2 })
      let release: (() => void) | undefined
      const port = await serve(async () => {
        const client = await p.connect()
        release = () => client.release()
        await client.query('BEGIN')
        await client.query("INSERT INTO marks (label) VALUES ('locked')")
        await client.query('LOCK TABLE marks IN ACCESS EXCLUSIVE MODE')
        await sleep(10_000) // the app forgets its transaction
        return 'never'
      })
      const reply = await send(port, { path: '/', headers: { 'x-timeout': '300' } })
      expect(reply.status).to.equal(503)
      // The lock is gone although the app still holds the client.
      const { rows } = await suite.watch.query({ text: 'SELECT count(*)::int AS n FROM marks', query_timeout: 2_000 } as pg.QueryConfig)
      expect(rows[0].n).to.equal(0)
      release!()
      await sleep(50)
      expect(p.idleCount).to.equal(1)
      expect(await idleInTransaction(suite.watch)).to.equal(0)
    })

    it('cancels a query inside a transaction and destroys the connection instead of returning it', async () => {
      const p = pool({ max: 1 })
      const port = await serve(async () => {
        const client = await p.connect()
        try {
          await client.query('BEGIN')
          await client.query("SELECT pg_sleep(30) /* in-tx */")
        } finally {
          client.release()
        }
      })
      const pending = send(port, { path: '/', headers: { 'x-timeout': '300' } })
      expect(await waitActive(suite.watch, 'in-tx')).to.equal(true)
      expect((await pending).status).to.equal(503)
      await sleep(100)
      expect(p.totalCount).to.equal(0)
      expect((await p.query('SELECT 1 AS one')).rows[0].one).to.equal(1)
    })
  })
})
