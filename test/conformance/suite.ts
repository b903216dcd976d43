import { expect } from 'chai'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { currentSignal } from '@leak-guard/core'
import { LONG_TIMEOUT, type AdapterKit, type Harness } from './adapters.js'
import { http1, type Transport } from './transport.js'
import { trackTimers } from '../helpers/timers.js'
import { captureProcessNoise, catchUncaught } from '../helpers/http.js'

// The conformance suite: the same behaviour, asserted through real sockets, for every adapter. Each
// matrix cell (framework major, server kind) calls defineConformance() with its own kits.

const DEADLINE = 100
let counter = 0
const nextId = (): string => `r${++counter}`

export interface ConformanceOptions {
  /** How the suite talks to the servers (HTTP/1.1, HTTP/1.1 over TLS, HTTP/2). @default http1() */
  transport?: Transport
}

/** Defines the suite (mocha describe/it) once per kit. */
export function defineConformance(kits: readonly AdapterKit[], options: ConformanceOptions = {}): void {
for (const kit of kits) {
  const t = options.transport ?? http1()
  describe(`leakGuard() on ${kit.title}${t.name === 'HTTP/1.1' ? '' : ` over ${t.name}`}`, function () {
    let h: Harness | undefined
    const send = (port: number, o: Parameters<Transport['send']>[1]) => t.send(port, o)
    const agent = () => t.client(h!.port)

    afterEach(async () => {
      t.reset()
      await h?.close()
      h = undefined
    })

    describe('when the request finishes in time', () => {
      beforeEach(async () => {
        h = await kit.start({ timeout: 1_000 })
      })

      it('answers GET with 200 and never aborts the signal while handling', async () => {
        const noise = captureProcessNoise()
        const id = nextId()
        const reply = await send(h!.port, { path: '/ok', id })
        expect(reply.status).to.equal(200)
        expect(JSON.parse(reply.body)).to.deep.equal({ aborted: false, body: null })
        await sleep(10)
        // After the end the signal is cancelled as Go cancels a request context — never by a timeout or disconnect.
        const record = h!.probe.get(id)!
        expect(record.reason === undefined || record.reason === 'LG_ERR_REQUEST_ENDED').to.equal(true)
        expect(noise.stop()).to.deep.equal([])
        expect(h!.guard.stats().ended.ok).to.equal(1)
      })

      it('answers POST with a parsed JSON body and never aborts the signal while handling', async () => {
        const noise = captureProcessNoise()
        const id = nextId()
        const reply = await send(h!.port, { method: 'POST', path: '/ok', id, json: { hello: 'world' } })
        expect(reply.status).to.equal(200)
        expect(JSON.parse(reply.body)).to.deep.equal({ aborted: false, body: { hello: 'world' } })
        await sleep(10)
        const record = h!.probe.get(id)!
        expect(record.reason === undefined || record.reason === 'LG_ERR_REQUEST_ENDED').to.equal(true)
        expect(noise.stop()).to.deep.equal([])
        expect(h!.guard.stats().ended).to.include({ ok: 1, 'client-closed': 0, timeout: 0 })
      })
    })

    describe('when the handler outlives the deadline', () => {
      beforeEach(async () => {
        h = await kit.start({ timeout: DEADLINE })
      })

      for (const method of ['GET', 'POST'] as const) {
        // Causal, not a tight window (CI runs four Node lines on two busy cores): the answer comes at the
        // deadline, before the handler's own 600 ms are over, and the abort never comes early.
        it(`answers ${method} with 503 + Retry-After at the deadline, before the handler's work ends, and aborts the signal with LG_ERR_TIMEOUT`, async () => {
          const a = agent()
          await a.send({ path: '/ok', id: nextId() }) // warm the connection
          const id = nextId()
          const json = method === 'POST' ? { n: 1 } : undefined
          const settled = once(h!.probe, `settled:${id}`)
          const reply = await a.send({ method, path: '/slow?ms=600', id, json })
          expect(reply.status).to.equal(503)
          expect(reply.headers['retry-after']).to.equal('1')
          expect(reply.elapsed).to.be.below(600)
          const record = h!.probe.get(id)!
          expect(record.reason).to.equal('LG_ERR_TIMEOUT')
          expect(record.abortedAt! - record.started).to.be.within(DEADLINE - 30, 400)
          await settled
          // The downstream step checks the signal after its slow part: it must not have run.
          expect(record.downstreamRan).to.equal(undefined)
          expect(record.downstreamSkipped).to.equal(true)
          expect(h!.guard.stats().ended.timeout).to.equal(1)
        })
      }

      for (const fail of [false, true]) {
        it(`keeps the process quiet and the keep-alive connection usable after a late ${fail ? 'rejection' : 'write'}`, async () => {
          const noise = captureProcessNoise()
          const a = agent()
          const id = nextId()
          const settled = once(h!.probe, `settled:${id}`)
          const reply = await a.send({ path: `/slow?ms=150&fail=${fail ? 1 : 0}`, id })
          expect(reply.status).to.equal(503)
          await settled
          await sleep(20) // let the late write / rejection travel through the framework
          const next = await a.send({ path: '/ok', id: nextId() })
          expect(next.status).to.equal(200)
          if (reply.headers.connection !== 'close') expect(next.reusedSocket).to.equal(true)
          expect(noise.stop()).to.deep.equal([])
        })
      }
    })

    describe('when the client disconnects mid-handler', () => {
      beforeEach(async () => {
        h = await kit.start({ timeout: 5_000 })
      })

      for (const [label, method, json] of [
        ['GET', 'GET', undefined],
        ['POST with a body already read', 'POST', { big: 'x'.repeat(2000) }],
      ] as const) {
        it(`aborts ${label} with LG_ERR_CLIENT_CLOSED within 50 ms`, async () => {
          const id = nextId()
          const socket = await t.hang(h!.port, method, '/hang', id, json)
          await h!.probe.started(id)
          await sleep(20) // the handler is waiting; the body (if any) has been parsed
          const destroyedAt = performance.now()
          socket.drop()
          const record = await h!.probe.aborted(id)
          expect(record.reason).to.equal('LG_ERR_CLIENT_CLOSED')
          expect(record.abortedAt! - destroyedAt).to.be.below(50)
          await sleep(10)
          expect(h!.guard.size).to.equal(0)
          expect(h!.guard.stats().ended['client-closed']).to.equal(1)
        })
      }
    })

    describe('when abort listeners throw (a signal listener and an onAbort handler)', () => {
      // Node reports an exception thrown by an EventTarget listener on the next tick, as an uncaught
      // exception; leak-guard reports a throwing onAbort handler the same way. An app that installed an
      // 'uncaughtException' handler keeps serving: the scope must still end and be counted.
      let uncaught: ReturnType<typeof catchUncaught>
      beforeEach(() => {
        uncaught = catchUncaught()
      })
      afterEach(() => uncaught.restore())

      /** Both throwing listeners were reported, the handler after them ran, the scope is gone and the server serves on. */
      async function expectIsolated(id: string, outcome: 'ok' | 'timeout' | 'client-closed', reason: string): Promise<void> {
        await sleep(20)
        const record = h!.probe.get(id)!
        expect(record.reason).to.equal(reason)
        expect(record.ranAfterThrow).to.equal(true)
        expect(uncaught.messages).to.have.members([`abort listener of ${id} threw`, `onAbort handler of ${id} threw`])
        const stats = h!.guard.stats()
        expect(stats.inFlight).to.equal(0)
        expect(stats.ended[outcome]).to.equal(1)
        expect(h!.guard.snapshot().scopes).to.deep.equal([])
        const next = await send(h!.port, { path: '/ok', id: nextId() })
        expect(next.status).to.equal(200)
        expect(h!.guard.stats().inFlight).to.equal(0)
      }

      it('at the normal end: answers 200, ends the scope and keeps serving', async () => {
        h = await kit.start({ timeout: 1_000 })
        const id = nextId()
        const reply = await send(h.port, { path: '/throwing', id })
        expect(reply.status).to.equal(200)
        await expectIsolated(id, 'ok', 'LG_ERR_REQUEST_ENDED')
      })

      it('at the deadline: answers 503, ends the scope and keeps serving', async () => {
        h = await kit.start({ timeout: DEADLINE })
        const id = nextId()
        const reply = await send(h.port, { path: '/throwing?hang=1', id })
        expect(reply.status).to.equal(503)
        expect(reply.headers['retry-after']).to.equal('1')
        await expectIsolated(id, 'timeout', 'LG_ERR_TIMEOUT')
      })

      it('when the client disconnects: ends the scope and keeps serving', async () => {
        h = await kit.start({ timeout: 5_000 })
        const id = nextId()
        const socket = await t.hang(h.port, 'GET', '/throwing?hang=1', id)
        await h.probe.started(id)
        socket.drop()
        await h.probe.aborted(id)
        await expectIsolated(id, 'client-closed', 'LG_ERR_CLIENT_CLOSED')
      })
    })

    describe('when many clients leave while their handlers await signal-aware work (a disconnect storm)', () => {
      beforeEach(async () => {
        h = await kit.start({ timeout: 5_000 })
      })

      it("logs nothing: the handlers' AbortErrors reach neither the framework's logger nor stderr", async () => {
        const noise = captureProcessNoise()
        const ids = Array.from({ length: 20 }, () => nextId())
        const sockets = await Promise.all(ids.map((id) => t.hang(h!.port, 'GET', '/abortable', id)))
        await Promise.all(ids.map((id) => h!.probe.started(id)))
        for (const socket of sockets) socket.drop()
        await Promise.all(ids.map((id) => h!.probe.aborted(id)))
        await sleep(100) // the rejections travel through the framework
        expect(noise.stop()).to.deep.equal([])
        expect(h!.logs).to.deep.equal([])
        expect(h!.guard.stats().ended['client-closed']).to.equal(ids.length)
        expect(h!.guard.size).to.equal(0)
      })
    })

    describe('with per-route timeouts', () => {
      beforeEach(async () => {
        h = await kit.start({ timeout: DEADLINE })
      })

      it('lets a route with a longer timeout finish', async () => {
        const reply = await send(h!.port, { path: `/long?ms=${DEADLINE * 2}`, id: nextId() })
        expect(reply.status).to.equal(200)
        expect(reply.elapsed).to.be.above(DEADLINE * 2 - 5)
      })

      it('still times out a route with a longer timeout at its own deadline', async () => {
        const reply = await send(h!.port, { path: `/long?ms=${LONG_TIMEOUT + 200}`, id: nextId() })
        expect(reply.status).to.equal(503)
        expect(reply.elapsed).to.be.within(LONG_TIMEOUT - 5, LONG_TIMEOUT + 100)
      })

      it('lets a streaming route opted out with `false` run past the default deadline', async () => {
        const id = nextId()
        const reply = await send(h!.port, { path: `/stream?ms=${DEADLINE * 2}`, id })
        expect(reply.status).to.equal(200)
        expect(reply.body).to.equal('ab')
        expect(h!.probe.get(id)!.reason === undefined || h!.probe.get(id)!.reason === 'LG_ERR_REQUEST_ENDED').to.equal(true)
      })

      it('aborts the signal and ends the response when the deadline hits after headers were sent', async () => {
        const id = nextId()
        const started = performance.now()
        const outcome = await t.partial(h!.port, '/headers-then-hang', id)
        expect(outcome.status).to.equal(200)
        expect(outcome.body).to.equal('partial')
        expect(outcome.complete).to.equal(false)
        expect(performance.now() - started).to.be.below(DEADLINE + 100)
        const record = await h!.probe.aborted(id)
        expect(record.reason).to.equal('LG_ERR_TIMEOUT')
      })
    })

    describe("with a caller's deadline header (inboundDeadline)", () => {
      beforeEach(async () => {
        h = await kit.start({ timeout: DEADLINE })
      })

      /** The live scope of the request `id`, once its handler started: what the handler sees at entry. */
      async function scopeAtEntry(id: string) {
        await h!.probe.started(id)
        const scope = [...h!.guard.scopes()].find((s) => s.state === 'running' && s.url.includes('/hang'))!
        return { remaining: scope.remaining(), source: scope.deadlineSource, timeout: scope.timeout }
      }

      for (const [name, value] of [['connect-timeout-ms', '60'], ['grpc-timeout', '60000u']] as const) {
        it(`answers 503 at the caller's earlier deadline (${name}: ${value}), and the handler knows its budget at entry`, async () => {
          const id = nextId()
          const replying = send(h!.port, { path: '/hang', id, headers: { [name]: value } })
          const entry = await scopeAtEntry(id)
          expect(entry.source).to.equal('inbound')
          expect(entry.timeout).to.equal(60)
          expect(entry.remaining).to.be.at.most(60).and.above(0)
          const reply = await replying
          expect(reply.status).to.equal(503)
          expect(reply.headers['retry-after']).to.equal('1')
          // Answered by the caller's deadline, not the local one (the TimeoutError names the one it missed).
          expect(reply.body).to.include('timed out after 60 ms')
          expect((await h!.probe.aborted(id)).reason).to.equal('LG_ERR_TIMEOUT')
          expect(h!.guard.stats().inboundDeadlines).to.deep.equal({ shortened: 1, ignored: 0, invalid: 0 })
        })
      }

      it("keeps an inbound deadline shorter than the route's own timeout in force after the route timeout is applied", async () => {
        const id = nextId()
        // Later than the guard's 100 ms (ignored at first), earlier than the route's 400 ms.
        const replying = send(h!.port, { path: '/hang-long', id, headers: { 'connect-timeout-ms': String(DEADLINE + 100) } })
        const entry = await scopeAtEntry(id)
        expect(entry.source).to.equal('inbound')
        expect(entry.timeout).to.equal(DEADLINE + 100)
        const reply = await replying
        expect(reply.status).to.equal(503)
        const record = await h!.probe.aborted(id)
        expect(record.reason).to.equal('LG_ERR_TIMEOUT')
        // The route's own deadline (400 ms) never came into play: the answer names the caller's.
        expect(reply.body).to.include(`timed out after ${DEADLINE + 100} ms`)
        expect(h!.guard.stats().inboundDeadlines).to.deep.equal({ shortened: 0, ignored: 1, invalid: 0 })
      })

      it('changes nothing with an inbound deadline later than the local one', async () => {
        const id = nextId()
        const replying = send(h!.port, { path: '/hang', id, headers: { 'connect-timeout-ms': '5000' } })
        const entry = await scopeAtEntry(id)
        expect(entry.source).to.equal('local')
        expect(entry.timeout).to.equal(DEADLINE)
        const reply = await replying
        expect(reply.status).to.equal(503)
        expect(reply.body).to.include(`timed out after ${DEADLINE} ms`)
        expect(h!.guard.stats().inboundDeadlines).to.deep.equal({ shortened: 0, ignored: 1, invalid: 0 })
      })

      it('answers 503 at once when the caller has no time left, and ignores a malformed value', async () => {
        const late = await send(h!.port, { path: '/ok', id: nextId(), headers: { 'connect-timeout-ms': '0' } })
        expect(late.status).to.equal(503)
        expect(late.headers['retry-after']).to.equal('1')
        const garbage = await send(h!.port, { path: '/ok', id: nextId(), headers: { 'grpc-timeout': '1 hour' } })
        expect(garbage.status).to.equal(200)
        expect(h!.guard.stats().inboundDeadlines).to.deep.equal({ shortened: 1, ignored: 0, invalid: 1 })
        expect(h!.guard.stats().ended.timeout).to.equal(1)
      })
    })

    describe('currentSignal()', () => {
      it('returns the signal of the right request under 50 concurrent interleaved requests', async () => {
        h = await kit.start({ timeout: 5_000 })
        const ids = Array.from({ length: 50 }, nextId)
        const replies = await Promise.all(ids.map((id) => send(h!.port, { path: '/context', id })))
        for (const reply of replies) {
          expect(reply.status).to.equal(200)
          expect(JSON.parse(reply.body)).to.deep.equal({ ok: true, checks: 6 })
        }
        for (const id of ids) expect(h!.probe.get(id)!.contextOk).to.have.length(6).and.not.include(false)
      })

      it('is undefined outside a request', async () => {
        h = await kit.start({ timeout: 5_000 })
        await send(h!.port, { path: '/ok', id: nextId() })
        expect(currentSignal()).to.equal(undefined)
      })

      it('is undefined in handlers with `context: false`', async () => {
        h = await kit.start({ timeout: 5_000, context: false })
        const reply = await send(h!.port, { path: '/context-off', id: nextId() })
        expect(JSON.parse(reply.body)).to.deep.equal({ current: false })
      })

      it('is defined in handlers by default', async () => {
        h = await kit.start({ timeout: 5_000 })
        const reply = await send(h!.port, { path: '/context-off', id: nextId() })
        expect(JSON.parse(reply.body)).to.deep.equal({ current: true })
      })
    })

    describe('after 2,000 mixed requests (ok, timeout, disconnect)', () => {
      it('leaves the registry empty and no leak-guard listener or timer behind', async function () {
        this.timeout(60_000)
        h = await kit.start({ timeout: 30, leakGracePeriod: 50 })
        const timers = trackTimers()
        const total = 2_000
        let next = 0
        const one = async (n: number): Promise<void> => {
          const id = nextId()
          const kind = n % 3
          if (kind === 0) {
            const reply = await send(h!.port, { path: '/ok', id })
            expect(reply.status).to.equal(200)
          } else if (kind === 1) {
            // Waits for its signal, then writes late: always a timeout, whatever the event loop's lag
            // (a handler racing its own timer against the deadline could legitimately win under load).
            const reply = await send(h!.port, { path: '/hang', id })
            expect(reply.status).to.equal(503)
          } else {
            const socket = await t.hang(h!.port, 'GET', '/hang-long', id)
            await h!.probe.started(id)
            socket.drop()
            await h!.probe.aborted(id)
          }
        }
        await Promise.all(
          Array.from({ length: 50 }, async () => {
            while (next < total) await one(next++)
          }),
        )
        await sleep(50) // the late writes of the timed-out handlers have run
        const stats = h!.guard.stats()
        expect(h!.guard.size).to.equal(0)
        expect(stats.inFlight).to.equal(0)
        expect(stats.started).to.equal(total)
        expect(stats.ended.ok).to.equal(Math.ceil(total / 3))
        expect(stats.ended.timeout).to.equal(Math.floor((total + 1) / 3))
        expect(stats.ended['client-closed']).to.equal(Math.floor(total / 3))
        for (const res of h!.responses) {
          const ours = res.listeners('close').filter((fn) => (fn as { name?: string }).name === 'onResponseClose')
          expect(ours).to.have.length(0)
        }
        expect(h!.responses.size).to.equal(total)
        await sleep(100) // leak watchers (leakGracePeriod 50) have fired
        const left = timers.live()
        if (left > 0 && process.env.LG_DEBUG_TIMERS) console.log(timers.stacks().join('\n\n'))
        timers.stop()
        expect(left).to.equal(0)
      })
    })

    describe('with invalid options', () => {
      const cases: Array<[string, Record<string, unknown>, string]> = [
        ['a negative timeout', { timeout: -1 }, 'timeout'],
        ['a NaN timeout', { timeout: Number.NaN }, 'timeout'],
        ['a non-integer timeout', { timeout: 1.5 }, 'timeout'],
        ['a zero timeout (use false)', { timeout: 0 }, 'timeout'],
        ['a string timeout', { timeout: '100' }, 'timeout'],
        ['a status below 400', { timeoutStatus: 200 }, 'timeoutStatus'],
        ['a status above 599', { timeoutStatus: 600 }, 'timeoutStatus'],
        ['a non-boolean context', { context: 'yes' }, 'context'],
        ['a negative retryAfter', { retryAfter: -1 }, 'retryAfter'],
        ['a numeric timeoutBody', { timeoutBody: 42 }, 'timeoutBody'],
        ['an unknown key', { timeuot: 100 }, 'timeuot'],
        ['a timeout a timer cannot hold (2 ** 31 ms)', { timeout: 2 ** 31 }, 'timeout'],
        ['a leakGracePeriod a timer cannot hold (2 ** 31 ms)', { leakGracePeriod: 2 ** 31 }, 'leakGracePeriod'],
      ]
      for (const [label, options, option] of cases) {
        it(`rejects ${label} with LG_ERR_INVALID_OPTION naming the option and the value`, async () => {
          let error: unknown
          try {
            await kit.create(options)
          } catch (caught) {
            error = caught
          }
          expect(error).to.be.an('error')
          const e = error as { code: string; option: string; message: string }
          expect(e.code).to.equal('LG_ERR_INVALID_OPTION')
          expect(e.option).to.equal(option)
          expect(e.message).to.include(`\`${option}\``)
          expect(e.message).to.include(String(Object.values(options)[0]).replace('NaN', 'NaN'))
        })
      }
    })
  })
}
}
