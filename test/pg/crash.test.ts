import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { activeWith, usePgTest, waitGone } from './apps.js'

const fixture = fileURLToPath(new URL('./fixtures/crash.ts', import.meta.url))

describe('@leak-guard/pg when the process dies mid-query', () => {
  const suite = usePgTest()
  let seq = 0

  async function crash(tag: string, plain: boolean): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, String(suite.db.port), tag, ...(plain ? ['--plain'] : [])], { stdio: ['ignore', 'ignore', 'inherit'] })
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null]
    expect(signal, `the child exited with ${code}`).to.equal('SIGKILL')
  }

  it("PostgreSQL stops the query at the request's deadline by itself (statement_timeout): no cancel was possible", async function () {
    this.timeout(20_000)
    const tag = `crash-${process.pid}-${++seq}`
    await crash(tag, false)
    // The child saw it running before it died; PostgreSQL does not notice the lost connection while
    // pg_sleep runs, and stops it at the deadline (plus the slack) by itself.
    expect(await waitGone(suite.watch, tag, 5_000), 'pg_sleep still active 5 s after the crash (deadline 2 s)').to.be.at.least(0)
  })

  it('without guardPool (the control) the query of the dead process is still active 3 s later, past the 2 s deadline', async function () {
    this.timeout(20_000)
    const tag = `crash-plain-${process.pid}-${++seq}`
    await crash(tag, true)
    await sleep(3_000)
    expect(await activeWith(suite.watch, tag), 'the orphaned query should still run').to.equal(1)
    await suite.watch.query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", [`/* ${tag} */`])
  })
})
