import { expect } from 'chai'
import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { trackTimers } from '../helpers/timers.js'
import { catchUncaught } from '../helpers/http.js'
import { ClientClosedError, createDispatcher, createGuard, currentScope, ShutdownError, TimeoutError, type Guard, type LeakEvent } from '@leak-guard/core'

/** A stand-in response: an emitter with the fields the scope reads. Real-socket behaviour is in test/conformance. */
function fakeResponse() {
  const res = Object.assign(new EventEmitter(), {
    headersSent: false,
    writableEnded: false,
    writableFinished: false,
    destroyed: false,
    finish() {
      res.headersSent = true
      res.writableEnded = true
      res.writableFinished = true
      res.emit('close')
    },
    leave() {
      res.emit('close')
    },
    destroy() {
      res.destroyed = true
    },
  })
  return res
}

function begin(guard: Guard, ctx?: unknown) {
  const res = fakeResponse()
  const answered: unknown[] = []
  const scope = guard.begin({ method: 'GET', url: '/x' } as never, res as never, ctx, {
    answer(_scope, error) {
      answered.push(error)
      res.headersSent = true
      return true
    },
  })
  return { scope, res, answered }
}

describe('RequestScope', () => {
  describe('signal', () => {
    it('is not created until read, and a reason recorded before the first read is on it', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      const reason = new ShutdownError()
      scope.abort(reason)
      expect(scope.aborted).to.equal(true)
      const signal = scope.signal
      expect(signal.aborted).to.equal(true)
      expect(signal.reason).to.equal(reason)
      res.finish()
    })

    it('keeps the first reason', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      const signal = scope.signal
      const first = new ClientClosedError()
      scope.abort(first)
      scope.abort(new ShutdownError())
      res.finish()
      expect(signal.reason).to.equal(first)
      expect(scope.reason).to.equal(first)
    })

    it('aborts with LG_ERR_REQUEST_ENDED when the response finishes normally', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      const signal = scope.signal
      let heard: string | undefined
      signal.addEventListener('abort', () => (heard = signal.reason.code))
      expect(signal.aborted).to.equal(false)
      res.finish()
      expect(heard).to.equal('LG_ERR_REQUEST_ENDED')
      expect(scope.reason?.code).to.equal('LG_ERR_REQUEST_ENDED')
      expect(guard.stats().ended.ok).to.equal(1)
    })

    it('skips dispatching the end abort to a signal nobody listens to, but a later read sees it aborted', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      const early = scope.signal
      res.finish()
      expect(early.aborted).to.equal(false) // nothing listened: no abort event was dispatched
      expect(scope.aborted).to.equal(true)
      expect(() => scope.throwIfAborted()).to.throw().with.property('code', 'LG_ERR_REQUEST_ENDED')
      expect(scope.signal.reason.code).to.equal('LG_ERR_REQUEST_ENDED')
      expect(early.aborted).to.equal(true)
    })

    it('aborts with LG_ERR_CLIENT_CLOSED when the response closes unfinished', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      res.leave()
      expect(scope.reason?.code).to.equal('LG_ERR_CLIENT_CLOSED')
      expect(guard.stats().ended['client-closed']).to.equal(1)
    })
  })

  describe('deadline', () => {
    it('aborts with TimeoutError and asks the adapter to answer when nothing was sent', async () => {
      const guard = createGuard({ timeout: 20 })
      const { scope, res, answered } = begin(guard)
      expect(scope.remaining()).to.be.within(1, 20)
      await sleep(40)
      expect(scope.reason).to.be.instanceOf(TimeoutError)
      expect(answered).to.deep.equal([scope.reason])
      expect(scope.remaining()).to.equal(0)
      res.finish()
    })

    it('destroys the response instead when headers were already sent', async () => {
      const guard = createGuard({ timeout: 20 })
      const { scope, res, answered } = begin(guard)
      res.headersSent = true
      await sleep(40)
      expect(scope.reason?.code).to.equal('LG_ERR_TIMEOUT')
      expect(answered).to.deep.equal([])
      expect(res.destroyed).to.equal(true)
      res.leave()
    })

    it('setTimeout(false) removes the deadline and setTimeout(ms) re-arms it from the start of the request', async () => {
      const guard = createGuard({ timeout: 20 })
      const { scope, res } = begin(guard)
      scope.setTimeout(false)
      expect(scope.deadline).to.equal(Infinity)
      await sleep(40)
      expect(scope.aborted).to.equal(false)
      scope.setTimeout(45)
      await sleep(15)
      expect(scope.reason?.code).to.equal('LG_ERR_TIMEOUT')
      res.finish()
    })

    it('rejects a bad per-request timeout with LG_ERR_INVALID_OPTION', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      for (const bad of [0, -1, 1.5, Number.NaN, '5' as never]) {
        expect(() => scope.setTimeout(bad)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
      }
      res.finish()
    })

    it('fires each default deadline on time from one shared timer, whatever ends in between', async () => {
      const timers = trackTimers()
      try {
        const guard = createGuard({ timeout: 80 })
        const fired: Array<{ index: number; late: number }> = []
        const started: Array<ReturnType<typeof begin>> = []
        for (let i = 0; i < 6; i++) {
          const entry = begin(guard)
          const index = i
          entry.scope.onAbort((reason) => {
            if (reason.code === 'LG_ERR_TIMEOUT') fired.push({ index, late: entry.scope.age() - 80 })
          })
          started.push(entry)
          await sleep(8)
        }
        expect(timers.live()).to.equal(1)
        // The oldest and one in the middle end first: the others keep their own deadlines.
        started[0]!.res.finish()
        started[3]!.res.finish()
        // Causal bounds (a loaded CI machine delays timers by tens of ms): none early, in deadline order,
        // none a whole deadline late.
        for (let waited = 0; fired.length < 4 && waited < 2_000; waited += 10) await sleep(10)
        expect(fired.map((f) => f.index)).to.deep.equal([1, 2, 4, 5])
        for (const f of fired) expect(f.late).to.be.within(0, 80)
        for (const { res } of started) res.finish()
        for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
        expect(timers.live()).to.equal(0)
        expect(guard.size).to.equal(0)
      } finally {
        timers.stop()
      }
    })

    it('answers a default deadline outside the context of the request that armed the shared timer', async () => {
      const other = begin(createGuard({ timeout: false }))
      const guard = createGuard({ timeout: 30 })
      // The first scope of the guard arms its shared timer while another request's context is current.
      const first = other.scope.run(() => begin(guard))
      let seen: unknown = 'not called'
      first.scope.onAbort(() => {
        seen = currentScope()
      })
      await sleep(60)
      expect(first.scope.reason?.code).to.equal('LG_ERR_TIMEOUT')
      expect(seen).to.equal(undefined)
      first.res.finish()
      other.res.finish()
    })

    it('leaves no timer behind once the requests ended: the shared deadline timer fires once and is not re-armed', async () => {
      const timers = trackTimers()
      try {
        const guard = createGuard({ timeout: 100 })
        const scopes = Array.from({ length: 100 }, () => begin(guard))
        // Scopes on the guard's default timeout share the guard's one deadline timer.
        expect(timers.live(), timers.stacks().join('\n---\n')).to.equal(1)
        for (const { res } of scopes) res.finish()
        expect(guard.size).to.equal(0)
        // It stays aimed at the first deadline (clearing it whenever the list empties would cost a
        // timer per request at low concurrency), fires there, finds the list empty and stops.
        await sleep(130)
        for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
        expect(timers.live(), timers.stacks().join('\n---\n')).to.equal(0)
        expect(timers.created()).to.equal(1)
      } finally {
        timers.stop()
      }
    })

    it('arms one deadline timer, not one per request, when requests come one at a time', async () => {
      const timers = trackTimers()
      try {
        const guard = createGuard({ timeout: 10_000 })
        for (let i = 0; i < 200; i++) begin(guard).res.finish()
        expect(timers.created()).to.equal(1)
        expect(guard.size).to.equal(0)
        // dispose() (shutdown) clears the idle timer at once.
        guard.dispose()
        for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
        expect(timers.live(), timers.stacks().join('\n---\n')).to.equal(0)
      } finally {
        timers.stop()
      }
    })
  })

  describe('registry', () => {
    it('lists the live scopes oldest first and forgets each as it ends, in any order', () => {
      const guard = createGuard({ timeout: false })
      const entries = Array.from({ length: 5 }, () => begin(guard))
      const ids = (): number[] => [...guard.scopes()].map((s) => s.id)
      expect(ids()).to.deep.equal(entries.map((e) => e.scope.id))
      // middle, newest, oldest, then the rest
      for (const index of [2, 4, 0]) {
        entries[index]!.res.finish()
        entries[index]!.res.finish() // a second close changes nothing
      }
      expect(ids()).to.deep.equal([entries[1]!.scope.id, entries[3]!.scope.id])
      expect(guard.size).to.equal(2)
      const late = begin(guard)
      expect(ids()).to.deep.equal([entries[1]!.scope.id, entries[3]!.scope.id, late.scope.id])
      for (const entry of [entries[1]!, entries[3]!, late]) entry.res.finish()
      expect(ids()).to.deep.equal([])
      expect(guard.size).to.equal(0)
      expect(guard.stats()).to.include({ inFlight: 0, started: 6 })
      expect(guard.stats().ended.ok).to.equal(6)
    })

    it('keeps iterating the scopes it listed when they end during the iteration', () => {
      const guard = createGuard({ timeout: false })
      const entries = Array.from({ length: 3 }, () => begin(guard))
      const seen: number[] = []
      for (const scope of guard.scopes()) {
        seen.push(scope.id)
        for (const e of entries) if (e.scope === scope) e.res.finish()
      }
      expect(seen).to.deep.equal(entries.map((e) => e.scope.id))
      expect(guard.size).to.equal(0)
    })
  })

  describe('onAbort()', () => {
    it('calls the handler once with the reason, without creating the signal, and can be disposed', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      const seen: string[] = []
      scope.onAbort((reason) => seen.push(reason.code))
      const dispose = scope.onAbort(() => seen.push('disposed one ran'))
      dispose()
      res.leave()
      res.emit('close')
      expect(seen).to.deep.equal(['LG_ERR_CLIENT_CLOSED'])
    })
  })

  describe('spawn()', () => {
    it('aborts the task when the request ends and reports it once as a leak if it ignores the signal', async () => {
      const guard = createGuard({ timeout: false, leakGracePeriod: 30, captureStacks: true })
      const leaks: LeakEvent[] = []
      guard.on('leak', (event: LeakEvent) => leaks.push(event))
      const { scope, res } = begin(guard)
      let sawAbort = false
      let release!: () => void
      void scope.spawn(async (signal) => {
        signal.addEventListener('abort', () => (sawAbort = true))
        await new Promise<void>((resolve) => (release = resolve)) // ignores the signal
      })
      const polite = scope.spawn((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))))
      res.finish()
      expect(sawAbort).to.equal(true)
      await polite.then(
        () => expect.fail('should reject'),
        (error: { code: string }) => expect(error.code).to.equal('LG_ERR_REQUEST_ENDED'),
      )
      await sleep(60)
      expect(leaks).to.have.length(1)
      expect(leaks[0]).to.include({ kind: 'spawn', reason: 'LG_ERR_REQUEST_ENDED', method: 'GET', url: '/x' })
      expect(leaks[0]!.lateBy).to.be.at.least(25)
      expect(leaks[0]!.stack).to.include('scope.test.ts')
      expect(guard.stats().leaks.spawn).to.equal(1)
      release()
    })

    it('refuses to start work on an aborted scope', async () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      res.leave()
      let ran = false
      const result = scope.spawn(() => {
        ran = true
      })
      await result.then(
        () => expect.fail('should reject'),
        (error: { code: string }) => expect(error.code).to.equal('LG_ERR_CLIENT_CLOSED'),
      )
      expect(ran).to.equal(false)
    })
  })

  describe('detach()', () => {
    it('outlives the request and is aborted by shutdown', async () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard)
      let signal!: AbortSignal
      const task = scope.detach((s) => {
        signal = s
        return new Promise((resolve) => s.addEventListener('abort', () => resolve(s.reason.code)))
      })
      res.finish()
      expect(signal.aborted).to.equal(false)
      expect(guard.stats().detached).to.equal(1)
      guard.beginShutdown()
      expect(await task).to.equal('LG_ERR_SHUTDOWN')
      await sleep(0)
      expect(guard.stats().detached).to.equal(0)
    })
  })

  describe('race()', () => {
    for (const [label, delay, reported] of [
      ['within leakGracePeriod of the abort (it honoured the signal)', 5, 0],
      ['later than leakGracePeriod after the abort', 60, 1],
    ] as const) {
      it(`rejects with the timeout and swallows a late rejection ${label}, reporting it ${reported ? 'as late work' : 'not at all'}`, async () => {
        const guard = createGuard({ timeout: 20, leakGracePeriod: 30 })
        const { scope, res } = begin(guard, undefined)
        let fail!: (e: Error) => void
        const work = new Promise((_, reject) => (fail = reject))
        const raced = scope.race(work)
        await raced.then(
          () => expect.fail('should reject'),
          (error: { code: string }) => expect(error.code).to.equal('LG_ERR_TIMEOUT'),
        )
        await sleep(delay)
        fail(new Error('late'))
        await sleep(5)
        expect(guard.stats().leaks.handler).to.equal(reported)
        res.finish()
      })
    }
  })

  describe('end and abort pipeline', () => {
    // Ending or aborting a scope runs in a fixed order: 1. bookkeeping (reason, state, deadline,
    // registry, outcome), 2. leak-guard's own subscribers (here a dispatcher's queue), 3. the user's
    // listeners (signal 'abort' listeners, then onAbort handlers), each isolated from the others.
    let caught: ReturnType<typeof catchUncaught>
    beforeEach(() => {
      caught = catchUncaught()
    })
    afterEach(() => caught.restore())

    /** Waits until `n` uncaught exceptions came in (they are reported on the next tick). */
    async function reported(n: number): Promise<string[]> {
      for (let i = 0; i < 20 && caught.messages.length < n; i++) await sleep(5)
      return caught.messages
    }

    const ends = [
      ['the request ends normally', 'ok', (_: Guard, res: ReturnType<typeof fakeResponse>) => res.finish()],
      ['the client leaves', 'client-closed', (_: Guard, res: ReturnType<typeof fakeResponse>) => res.leave()],
      ['shutdown aborts it', 'shutdown', (guard: Guard) => guard.abortAll()],
    ] as const

    for (const [label, outcome, end] of ends) {
      it(`has done its bookkeeping before any listener runs when ${label}`, async () => {
        const guard = createGuard({ timeout: false })
        const { scope, res } = begin(guard)
        const seen: unknown[] = []
        const look = (who: string) => () => seen.push({ who, inFlight: guard.stats().inFlight, listed: [...guard.scopes()].includes(scope), aborted: scope.aborted })
        scope.signal.addEventListener('abort', look('signal'))
        scope.onAbort(look('onAbort'))
        end(guard, res)
        if (outcome === 'shutdown') {
          // Aborted and answered, not ended yet: the registry still lists it until its response closes.
          expect(seen).to.deep.equal([
            { who: 'signal', inFlight: 1, listed: true, aborted: true },
            { who: 'onAbort', inFlight: 1, listed: true, aborted: true },
          ])
          res.finish()
        } else {
          expect(seen).to.deep.equal([
            { who: 'signal', inFlight: 0, listed: false, aborted: true },
            { who: 'onAbort', inFlight: 0, listed: false, aborted: true },
          ])
        }
        expect(guard.stats().ended[outcome]).to.equal(1)
      })

      it(`runs leak-guard's subscribers before the user's listeners, even those added first, when ${label}`, async () => {
        const guard = createGuard({ timeout: false })
        const { scope, res } = begin(guard)
        const d = createDispatcher({ concurrency: 1, guard })
        let release!: () => void
        const holder = d.run(() => new Promise<void>((resolve) => (release = resolve)))
        const order: string[] = []
        scope.signal.addEventListener('abort', () => order.push(`signal: ${d.stats().queued} queued`))
        scope.onAbort(() => order.push(`onAbort: ${d.stats().queued} queued`))
        const queued = scope.run(() => d.run(async () => 'ran'))
        expect(d.stats().queued).to.equal(1)
        end(guard, res)
        // The dispatcher's subscriber dropped the queued task before the user's listeners looked.
        expect(order).to.deep.equal(['signal: 0 queued', 'onAbort: 0 queued'])
        expect(await queued.catch((e: { code: string }) => e.code)).to.equal(scope.reason!.code)
        if (outcome === 'shutdown') res.finish()
        release()
        await holder
        await d.destroy()
      })

      it(`isolates throwing listeners: the rest run, the scope ends, the errors surface on the next tick, when ${label}`, async () => {
        const guard = createGuard({ timeout: false })
        const { scope, res, answered } = begin(guard)
        const ran: string[] = []
        scope.signal.addEventListener('abort', () => {
          throw new Error('signal listener threw')
        })
        scope.signal.addEventListener('abort', () => ran.push('second signal listener'))
        scope.onAbort(() => {
          throw new Error('onAbort threw')
        })
        scope.onAbort(() => ran.push('second onAbort'))
        const off = guard.onScopeEnd(() => {
          throw new Error('onScopeEnd threw')
        })
        guard.onScopeEnd(() => ran.push('second onScopeEnd'))
        end(guard, res)
        if (outcome === 'shutdown') {
          expect(answered).to.have.length(1) // the answer still went out
          res.finish()
        }
        expect(ran).to.deep.equal(outcome === 'shutdown' ? ['second signal listener', 'second onAbort', 'second onScopeEnd'] : ['second onScopeEnd', 'second signal listener', 'second onAbort'])
        expect(guard.stats().inFlight).to.equal(0)
        expect(guard.stats().ended[outcome]).to.equal(1)
        expect(guard.snapshot().scopes).to.deep.equal([])
        expect(caught.messages).to.deep.equal([]) // not thrown synchronously through the caller
        expect(await reported(3)).to.have.members(['signal listener threw', 'onAbort threw', 'onScopeEnd threw'])
        off()
      })
    }

    it('answers a deadline even when an onAbort handler throws', async () => {
      const guard = createGuard({ timeout: 20 })
      const { scope, res, answered } = begin(guard)
      scope.onAbort(() => {
        throw new Error('onAbort threw')
      })
      await sleep(60)
      expect(answered).to.have.length(1)
      expect(answered[0]).to.be.instanceOf(TimeoutError)
      res.finish()
      expect(guard.stats()).to.deep.include({ inFlight: 0 })
      expect(guard.stats().ended.timeout).to.equal(1)
      expect(await reported(1)).to.deep.equal(['onAbort threw'])
    })
  })
})
