import { expect } from 'chai'
import { EventEmitter } from 'node:events'
import { createGuard, TimeoutError } from '@leak-guard/core'
import { expireDeadline, withCause } from '@leak-guard/core/adapter'

/** A request whose response already sent its headers: an abort then only cuts it (a no-op here). */
function fakeRequest(): { req: { method: string; url: string; headers: Record<string, string> }; res: EventEmitter } {
  return { req: { method: 'GET', url: '/', headers: {} }, res: Object.assign(new EventEmitter(), { writableFinished: true, writableEnded: false, headersSent: true, destroy() {} }) }
}

describe('@leak-guard/core/adapter for integrations', () => {
  describe('withCause(reason, cause)', () => {
    it('copies the reason with its class, code, status and headers, adds the cause, and leaves the reason untouched', () => {
      const reason = new TimeoutError(200, 503, { 'Retry-After': '1' })
      const cause = Object.assign(new Error('canceling statement due to user request'), { code: '57014' })
      const copy = withCause(reason, cause)
      expect(copy).to.be.instanceOf(TimeoutError)
      expect(copy).to.not.equal(reason)
      expect([copy.code, copy.statusCode, copy.headers, copy.message, copy.timeout]).to.deep.equal(['LG_ERR_TIMEOUT', 503, { 'Retry-After': '1' }, reason.message, 200])
      expect(copy.cause).to.equal(cause)
      expect(reason.cause).to.equal(undefined)
    })

    it('works on a frozen reason (the shared LG_ERR_REQUEST_ENDED)', () => {
      const guard = createGuard({ timeout: false })
      const { req, res } = fakeRequest()
      const scope = guard.begin(req as never, res as never)
      res.emit('close')
      const ended = scope.reason!
      expect(Object.isFrozen(ended)).to.equal(true)
      const copy = withCause(ended, 'x')
      expect(copy.code).to.equal('LG_ERR_REQUEST_ENDED')
      expect(copy.cause).to.equal('x')
    })
  })

  describe('expireDeadline(scope)', () => {
    it('does nothing while the deadline is ahead, or when there is none', () => {
      const guard = createGuard({ timeout: 10_000 })
      const ahead = guard.begin(fakeRequest().req as never, fakeRequest().res as never)
      expect(expireDeadline(ahead)).to.equal(false)
      expect(ahead.aborted).to.equal(false)
      const none = guard.begin(fakeRequest().req as never, fakeRequest().res as never, undefined, undefined, false)
      expect(expireDeadline(none)).to.equal(false)
      guard.abortAll()
    })

    it('runs a passed deadline whose timer has not fired yet: the scope aborts with its own TimeoutError', () => {
      const guard = createGuard({ timeout: 30 })
      const { req, res } = fakeRequest()
      const scope = guard.begin(req as never, res as never)
      // Block past the deadline so its timer cannot have run.
      const until = performance.now() + 60
      while (performance.now() < until);
      expect(scope.aborted).to.equal(false)
      expect(expireDeadline(scope)).to.equal(true)
      expect(scope.reason).to.be.instanceOf(TimeoutError)
    })
  })
})
