import { expect } from 'chai'
import type pg from 'pg'
import { sql as dsql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import { Kysely, PostgresDialect, sql as ksql } from 'kysely'
import { guardPool } from '@leak-guard/pg'
import { send } from '../helpers/http.js'
import { idleInTransaction, poolFor, type RouteWork, sleepQuery, startApp, usePgTest, waitGone } from './apps.js'

describe('@leak-guard/pg through Drizzle ORM and Kysely', () => {
  const suite = usePgTest()
  const { db, cleanup } = suite
  let seq = 0

  const cases: Array<[string, (pool: pg.Pool) => RouteWork]> = [
    ['Drizzle db.execute()', (pool) => {
      const orm = drizzle({ client: pool })
      return (_pool, tag) => orm.execute(dsql.raw(sleepQuery(tag)))
    }],
    ['Drizzle db.transaction()', (pool) => {
      const orm = drizzle({ client: pool })
      return (_pool, tag) => orm.transaction(async (tx) => tx.execute(dsql.raw(sleepQuery(tag))))
    }],
    ['Kysely sql`...`.execute()', (pool) => {
      const orm = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
      return (_pool, tag) => ksql.raw(sleepQuery(tag)).execute(orm)
    }],
    ['Kysely db.transaction()', (pool) => {
      const orm = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
      return (_pool, tag) => orm.transaction().execute(async (trx) => ksql.raw(sleepQuery(tag)).execute(trx))
    }],
  ]

  for (const [label, make] of cases) {
    it(`${label} on the guarded pool: a 200 ms deadline answers 503 and cancels pg_sleep(30) in PostgreSQL`, async () => {
      const pool = guardPool(poolFor(db))
      cleanup.push(() => (pool.ending ? undefined : pool.end()))
      const app = await startApp('express', { timeout: 200 }, pool, make(pool))
      cleanup.push(() => app.close())
      const tag = `orm-${process.pid}-${++seq}`
      const reply = await send(app.port, { path: `/work/${tag}` })
      expect(reply.status).to.equal(503)
      expect(await waitGone(suite.watch, tag), 'pg_sleep still active 2 s after the 503').to.be.at.least(0)
      expect(await idleInTransaction(suite.watch), 'a connection stays idle in transaction').to.equal(0)
      // The pool serves the next query.
      expect((await pool.query('SELECT 1 AS one')).rows[0].one).to.equal(1)
    })
  }
})
