import { expect } from 'chai'
import { Agent, request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { createGuard, currentSignal } from '@leak-guard/core'
import { guardPool } from '@leak-guard/pg'
import { usePostgres } from '../helpers/postgres.js'
import { monitor, poolFor, serveCore } from './apps.js'

const REQUESTS = 10_000
const CONCURRENCY = 32
const MAX = 6

// 'complete': a transaction with room to finish (5 s), so completed requests interleave with aborted ones.
type Scenario = 'query' | 'tx' | 'done-early' | 'disconnect' | 'complete'
const scenarios: Scenario[] = ['query', 'tx', 'done-early', 'disconnect', 'complete']

/** One request; resolves with its status, or 0 when the client gave up on it (the disconnect scenario). */
function hit(agent: Agent, port: number, path: string, timeout: number, giveUpAfter?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent, headers: { 'x-timeout': String(timeout) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
      res.on('error', () => resolve(0))
    })
    req.on('error', (error) => (giveUpAfter === undefined ? reject(error) : resolve(0)))
    if (giveUpAfter !== undefined) setTimeout(() => req.destroy(), giveUpAfter)
    req.end()
  })
}

describe('@leak-guard/pg: soak', () => {
  const db = usePostgres()
  const cleanup: Array<() => unknown> = []
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
  })

  it(`survives ${REQUESTS} requests aborted at random points, with queries outside requests never failing`, async function () {
    this.timeout(180_000)
    const watch = await monitor(db)
    cleanup.push(() => watch.end())
    await watch.query('CREATE TABLE IF NOT EXISTS soak (id serial PRIMARY KEY, n int NOT NULL)')
    const guard = createGuard({ timeout: 30_000 })
    const pool = guardPool(poolFor(db, { max: MAX, application_name: 'soak' }), { guard })
    cleanup.push(() => (pool.ending ? undefined : pool.end()))
    const errors: unknown[] = []
    pool.on('error', (error) => errors.push(error))
    const statuses = new Map<number, number>()
    const failures = new Map<string, number>()
    const server = await serveCore(guard, async (req) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const scenario = url.searchParams.get('s') as Scenario
      const ms = Number(url.searchParams.get('ms'))
      try {
        if (scenario === 'query' || scenario === 'disconnect') return (await pool.query('SELECT pg_sleep($1)', [ms / 1000])).rowCount
        if (scenario === 'done-early') {
          await pool.query('SELECT 1')
          await sleep(60, undefined, { signal: currentSignal() })
          return 'late'
        }
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query('INSERT INTO soak (n) VALUES ($1)', [ms])
          await client.query('SELECT pg_sleep($1)', [ms / 1000])
          await client.query('COMMIT')
        } finally {
          client.release()
        }
        return 'committed'
      } catch (error) {
        const code = (error as { code?: string }).code ?? String(error)
        failures.set(code, (failures.get(code) ?? 0) + 1)
        throw error
      }
    })

    // Outside any request, on the same pool, all along: each statement (100 ms) runs longer than any request's
    // deadline (≤ 50 ms) plus its slack (20 ms), so a statement_timeout left behind by a request would fail it, and so
    // would a stray cancel.
    let running = true
    let outsideOk = 0
    const outsideFailures: unknown[] = []
    const outside = async (): Promise<void> => {
      while (running) {
        try {
          await pool.query('SELECT pg_sleep(0.1)')
          const client = await pool.connect()
          try {
            await client.query('BEGIN')
            await client.query('SELECT pg_sleep(0.1)')
            await client.query('COMMIT')
          } finally {
            client.release()
          }
          outsideOk++
        } catch (error) {
          outsideFailures.push(error)
        }
      }
    }
    const background = [outside(), outside()]
    cleanup.push(async () => {
      running = false
      await Promise.all(background)
      await server.close()
    })

    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
    const started = performance.now()
    let next = 0
    let incomplete = 0
    const worker = async (): Promise<void> => {
      while (next < REQUESTS) {
        const i = next++
        const scenario = scenarios[i % scenarios.length]!
        const deadline = scenario === 'complete' ? 5_000 : 1 + Math.floor(Math.random() * 50)
        const ms = Math.floor(Math.random() * 15)
        const status = await hit(agent, server.port, `/?s=${scenario}&ms=${ms}`, deadline, scenario === 'disconnect' ? 1 + Math.floor(Math.random() * 15) : undefined)
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if (scenario === 'complete' && status !== 200) incomplete++
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const elapsed = performance.now() - started
    running = false
    await Promise.all(background)
    agent.destroy()

    await sleep(100)
    const idleInTx = await watch.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'soak' AND state LIKE 'idle in transaction%'")
    const backends = await watch.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'soak'")
    console.log(
      `      ${REQUESTS} requests in ${Math.round(elapsed)} ms: statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `request failures ${JSON.stringify(Object.fromEntries(failures))}, ${outsideOk} rounds outside requests, ` +
        `pool total ${pool.totalCount} idle ${pool.idleCount} waiting ${pool.waitingCount}, backends ${backends.rows[0].n}`,
    )
    expect(outsideFailures, 'a query outside any request failed').to.deep.equal([])
    expect(outsideOk).to.be.above(0)
    expect(errors, 'the pool emitted errors').to.deep.equal([])
    expect([...statuses.keys()].filter((s) => s !== 200 && s !== 503 && s !== 0), 'answers other than 200/503').to.deep.equal([])
    expect(statuses.get(503) ?? 0, 'no request was aborted').to.be.above(1000)
    expect(incomplete, "'complete' requests that did not answer 200").to.equal(0)
    expect(pool.waitingCount).to.equal(0)
    expect(pool.totalCount).to.be.at.most(MAX)
    expect(backends.rows[0].n).to.be.at.most(MAX)
    expect(idleInTx.rows[0].n, 'connections idle in transaction').to.equal(0)

    // The next 1,000 queries, inside requests with room to finish, all succeed.
    const after = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
    let ok = 0
    let sent = 0
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (sent < 1_000) {
          sent++
          if ((await hit(after, server.port, '/?s=query&ms=0', 10_000)) === 200) ok++
        }
      }),
    )
    after.destroy()
    expect(ok).to.equal(1_000)
    expect(pool.totalCount).to.be.at.most(MAX)

  })
})
