import { expect } from 'chai'
import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { createGuard, TimeoutError, type Guard, type GuardOptions } from '@leak-guard/core'
import { formatDeadline, parseGrpcTimeout, parseMillis, readInboundDeadline } from '@leak-guard/core/adapter'

/** A stand-in response with the fields the scope reads; real sockets are in test/conformance/inbound-deadline.test.ts. */
function fakeResponse() {
  const res = Object.assign(new EventEmitter(), {
    headersSent: false,
    writableEnded: false,
    writableFinished: false,
    finish() {
      res.headersSent = res.writableEnded = res.writableFinished = true
      res.emit('close')
    },
  })
  return res
}

function begin(guard: Guard, headers: Record<string, string | string[]>) {
  const res = fakeResponse()
  const answered: unknown[] = []
  const scope = guard.begin({ method: 'GET', url: '/x', headers } as never, res as never, undefined, {
    answer(_scope, error) {
      answered.push(error)
      res.headersSent = true
      return true
    },
  })
  return { scope, res, answered }
}

const grpc = { name: 'grpc-timeout', grpc: true }
const connect = { name: 'connect-timeout-ms', grpc: false }

describe('deadline headers', () => {
  describe('grpc-timeout', () => {
    it('reads every unit', () => {
      expect(parseGrpcTimeout('2H')).to.equal(7_200_000)
      expect(parseGrpcTimeout('3M')).to.equal(180_000)
      expect(parseGrpcTimeout('5S')).to.equal(5_000)
      expect(parseGrpcTimeout('250m')).to.equal(250)
      expect(parseGrpcTimeout('1500u')).to.equal(1.5)
      expect(parseGrpcTimeout('2000000n')).to.equal(2)
      expect(parseGrpcTimeout('0m')).to.equal(0)
      expect(parseGrpcTimeout('99999999S')).to.equal(99_999_999_000)
    })

    it('refuses more than 8 digits, a missing or unknown unit, signs, spaces and garbage', () => {
      for (const bad of ['123456789m', '000000001S', '', 'm', '10', '10s', '10ms', '10 m', ' 10m', '-1m', '+1m', '1.5S', '1e3m', 'abc', '10m,20m', '１0m']) {
        expect(parseGrpcTimeout(bad), bad).to.be.NaN
      }
    })

    it('writes whole milliseconds with the finest unit that fits in 8 digits, never longer than given', () => {
      expect(formatDeadline(grpc, 1)).to.equal('1m')
      expect(formatDeadline(grpc, 99_999_999)).to.equal('99999999m')
      expect(formatDeadline(grpc, 100_000_999)).to.equal('100000S')
      expect(formatDeadline(grpc, 99_999_999_999)).to.equal('99999999S')
      expect(formatDeadline(grpc, 100_000_000_000)).to.equal('1666666M')
      for (const ms of [1, 999, 99_999_999, 100_000_999, 99_999_999_999, 8_000_000_000_000]) {
        const back = parseGrpcTimeout(formatDeadline(grpc, ms))
        expect(back, String(ms)).to.be.at.most(ms)
      }
    })
  })

  describe('Connect-Timeout-Ms and decimal headers', () => {
    it('reads 1 to 10 digits and nothing else', () => {
      expect(parseMillis('0')).to.equal(0)
      expect(parseMillis('1500')).to.equal(1_500)
      expect(parseMillis('9999999999')).to.equal(9_999_999_999)
      for (const bad of ['', '12345678901', '-5', '+5', '1.5', '1e3', ' 5', '5 ', '0x10', 'soon']) expect(parseMillis(bad), bad).to.be.NaN
    })

    it('writes decimal milliseconds', () => {
      expect(formatDeadline(connect, 1234)).to.equal('1234')
    })
  })

  describe('readInboundDeadline()', () => {
    const both = { headers: [connect, grpc], margin: 0 }
    it('is undefined without a header, NaN when malformed, and the earliest of several', () => {
      expect(readInboundDeadline({}, both)).to.equal(undefined)
      expect(readInboundDeadline({ 'connect-timeout-ms': 'x' }, both)).to.be.NaN
      expect(readInboundDeadline({ 'connect-timeout-ms': '500', 'grpc-timeout': '2S' }, both)).to.equal(500)
      expect(readInboundDeadline({ 'connect-timeout-ms': 'x', 'grpc-timeout': '2S' }, both)).to.equal(2_000)
      expect(readInboundDeadline({ 'grpc-timeout': '300m', 'connect-timeout-ms': 'x' }, both)).to.equal(300)
      // A repeated header node:http kept as an array is not a number.
      expect(readInboundDeadline({ 'grpc-timeout': ['1S', '2S'] } as never, both)).to.be.NaN
    })
  })

  describe('guard option inboundDeadline', () => {
    it('is validated once, with LG_ERR_INVALID_OPTION', () => {
      const bad: unknown[] = [
        null,
        true,
        0,
        'connect',
        { headers: [] },
        { headers: 'connect' },
        { headers: ['bad header'] },
        { headers: [42] },
        { margin: -1 },
        { margin: 1.5 },
        { margin: false },
        { header: ['connect'] },
      ]
      for (const value of bad) {
        expect(() => createGuard({ inboundDeadline: value } as GuardOptions), JSON.stringify(value))
          .to.throw()
          .with.property('code', 'LG_ERR_INVALID_OPTION')
      }
      expect(createGuard().options.inboundDeadline).to.deep.equal({ headers: [connect, grpc], margin: 0 })
      expect(createGuard({ inboundDeadline: { headers: ['envoy', 'X-Deadline-Ms'], margin: 20 } }).options.inboundDeadline).to.deep.equal({
        headers: [
          { name: 'x-envoy-expected-rq-timeout-ms', grpc: false },
          { name: 'x-deadline-ms', grpc: false },
        ],
        margin: 20,
      })
    })
  })

  describe('a request with a deadline header', () => {
    it('is shortened to an earlier inbound deadline, minus the margin', () => {
      const guard = createGuard({ timeout: 30_000, inboundDeadline: { margin: 100 } })
      const { scope, res } = begin(guard, { 'connect-timeout-ms': '1000' })
      expect(scope.timeout).to.equal(900)
      expect(scope.deadlineSource).to.equal('inbound')
      expect(scope.remaining()).to.be.within(850, 900)
      expect(guard.snapshot().scopes[0]).to.include({ deadlineSource: 'inbound' })
      res.finish()
      expect(guard.stats().inboundDeadlines).to.deep.equal({ shortened: 1, ignored: 0, invalid: 0 })
    })

    it('changes nothing when the inbound deadline is later than the local one', () => {
      const guard = createGuard({ timeout: 1_000 })
      const { scope, res } = begin(guard, { 'grpc-timeout': '5S' })
      expect(scope.timeout).to.equal(1_000)
      expect(scope.deadlineSource).to.equal('local')
      // Still on the guard's shared deadline list, not a timer of its own.
      expect((guard as unknown as { deadlines?: { ms: number } }).deadlines!.ms).to.equal(1_000) // internal: not in the .d.ts
      res.finish()
      expect(guard.stats().inboundDeadlines).to.deep.equal({ shortened: 0, ignored: 1, invalid: 0 })
    })

    it('ignores and counts a malformed value, never throwing', () => {
      const guard = createGuard({ timeout: 1_000 })
      const { scope, res, answered } = begin(guard, { 'connect-timeout-ms': '-5' })
      expect(scope.timeout).to.equal(1_000)
      expect(scope.deadlineSource).to.equal('local')
      expect(answered).to.have.length(0)
      res.finish()
      expect(guard.stats().inboundDeadlines).to.deep.equal({ shortened: 0, ignored: 0, invalid: 1 })
    })

    it('is answered at once as a timeout when the deadline is zero or used up by the margin', () => {
      const guard = createGuard({ timeout: 30_000, inboundDeadline: { margin: 50 } })
      for (const headers of [{ 'connect-timeout-ms': '0' }, { 'grpc-timeout': '40m' }] as Array<Record<string, string>>) {
        const { scope, res, answered } = begin(guard, headers)
        expect(answered).to.have.length(1)
        expect(answered[0]).to.be.instanceOf(TimeoutError)
        expect(scope.aborted).to.equal(true)
        expect(scope.reason?.code).to.equal('LG_ERR_TIMEOUT')
        expect(scope.remaining()).to.equal(0)
        res.finish()
      }
      expect(guard.stats().ended.timeout).to.equal(2)
    })

    it('applies to a guard without a local timeout', () => {
      const guard = createGuard({ timeout: false })
      const { scope, res } = begin(guard, { 'grpc-timeout': '2S' })
      expect(scope.timeout).to.equal(2_000)
      expect(scope.deadline).to.be.lessThan(Infinity)
      res.finish()
    })

    it('reads nothing with inboundDeadline: false', () => {
      const guard = createGuard({ timeout: 1_000, inboundDeadline: false })
      const { scope, res } = begin(guard, { 'connect-timeout-ms': '10' })
      expect(scope.timeout).to.equal(1_000)
      res.finish()
      expect(guard.stats().inboundDeadlines).to.deep.equal({ shortened: 0, ignored: 0, invalid: 0 })
    })

    it('reads the headers it is told to, and only those', () => {
      const guard = createGuard({ timeout: 1_000, inboundDeadline: { headers: ['envoy', 'x-budget-ms'] } })
      const a = begin(guard, { 'connect-timeout-ms': '10' })
      expect(a.scope.timeout).to.equal(1_000)
      const b = begin(guard, { 'x-envoy-expected-rq-timeout-ms': '300' })
      expect(b.scope.timeout).to.equal(300)
      const c = begin(guard, { 'x-budget-ms': '200' })
      expect(c.scope.timeout).to.equal(200)
      for (const x of [a, b, c]) x.res.finish()
    })
  })

  describe('with a route timeout (scope.setTimeout)', () => {
    it('keeps an earlier inbound deadline in force, the earliest wins', async () => {
      const guard = createGuard({ timeout: 30_000 })
      const { scope, res, answered } = begin(guard, { 'connect-timeout-ms': '60' })
      scope.setTimeout(5_000)
      expect(scope.timeout).to.equal(60)
      expect(scope.deadlineSource).to.equal('inbound')
      scope.setTimeout(false)
      expect(scope.timeout).to.equal(60)
      scope.setTimeout(20)
      expect(scope.timeout).to.equal(20)
      expect(scope.deadlineSource).to.equal('local')
      scope.setTimeout(5_000)
      expect(scope.timeout).to.equal(60)
      await sleep(150)
      expect(answered).to.have.length(1)
      expect((answered[0] as TimeoutError).timeout).to.equal(60)
      res.finish()
    })

    it('lets a route timeout shorter than the inbound deadline win', async () => {
      const guard = createGuard({ timeout: 30_000 })
      const { scope, res, answered } = begin(guard, { 'connect-timeout-ms': '5000' })
      scope.setTimeout(30)
      expect(scope.deadlineSource).to.equal('local')
      await sleep(120)
      expect(answered).to.have.length(1)
      expect((answered[0] as TimeoutError).timeout).to.equal(30)
      res.finish()
    })
  })
})
