import { expect } from 'chai'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

describe('observe: diagnostics_channel subscriptions', () => {
  it('subscribes while a guard with context watches, unsubscribes when the last is disposed, and leaves nothing running', async function () {
    this.timeout(20_000)
    const child = fork(fileURLToPath(new URL('./fixtures/subscriptions-child.mjs', import.meta.url)), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const [report] = (await once(child, 'message')) as [Record<string, unknown>]
    const started = performance.now()
    const [code] = (await once(child, 'exit')) as [number | null]
    expect(report.before).to.deep.equal([false, false, false, false])
    expect(report.two).to.deep.equal([true, true, true, true])
    expect(report.one).to.deep.equal([true, true, true, true])
    expect(report.none).to.deep.equal([false, false, false, false])
    expect(report.resources).to.deep.equal([])
    // Exits by itself: no timer, monitor or listener of leak-guard keeps the loop alive.
    expect(code).to.equal(0)
    expect(performance.now() - started).to.be.below(2_000)
  })
})
