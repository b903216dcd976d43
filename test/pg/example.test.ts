import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'
import { usePostgres } from '../helpers/postgres.js'
import { monitor } from './apps.js'
import { freePort } from '../../scripts/postgres.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))

describe('examples/quickstart/pg.ts (the README usage of @leak-guard/pg)', () => {
  const db = usePostgres()
  let child: ChildProcess | undefined
  let watch: pg.Client | undefined

  afterEach(async () => {
    await watch?.end()
    if (child && child.exitCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  })

  it('answers /report with 503 + Retry-After at its 1 s deadline and its pg_sleep(10) is gone from PostgreSQL', async function () {
    this.timeout(30_000)
    const port = await freePort()
    child = spawn(process.execPath, ['--import', 'tsx', 'pg.ts'], {
      cwd: join(root, 'examples', 'quickstart'),
      env: { ...process.env, PORT: String(port), PGHOST: db.host, PGPORT: String(db.port), PGUSER: db.user, PGDATABASE: db.database },
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    let reply: Response | undefined
    for (let i = 0; i < 100 && reply === undefined; i++) {
      if (child.exitCode !== null) throw new Error(`example exited with ${child.exitCode}`)
      reply = await fetch(`http://127.0.0.1:${port}/report`).catch(async () => {
        await sleep(100)
        return undefined
      })
    }
    expect(reply?.status).to.equal(503)
    expect(reply?.headers.get('retry-after')).to.equal('1')
    watch = await monitor(db)
    let active = 1
    for (let i = 0; i < 200 && active > 0; i++) {
      const { rows } = await watch.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(10)%' AND pid <> pg_backend_pid()")
      active = rows[0].n
      if (active > 0) await sleep(10)
    }
    expect(active, 'pg_sleep(10) still active 2 s after the 503').to.equal(0)
  })
})
