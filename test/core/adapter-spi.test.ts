import { expect } from 'chai'
import { EventEmitter } from 'node:events'
import { createGuard, TimeoutError } from '@leak-guard/core'
import { createScopeSlot, expireDeadline, withCause, withGuard } from '@leak-guard/core/adapter'

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

  describe('createScopeSlot() (the Express/Koa adapter kit)', () => {
    it('installs the getters once per prototype, stores the scope (and its guard) as non-enumerable own symbols, and reads them through the getters', () => {
      const guard = createGuard({ timeout: false })
      const slot = createScopeSlot({ name: 'spi-test', afterRoutes: 'mounted after the routes', guardProperty: 'leakGuard' })
      class AppRequest {}
      const first = new AppRequest() as { signal?: AbortSignal; scope?: unknown; leakGuard?: unknown }
      expect(slot.held(first, guard)).to.equal(false)
      expect(slot.install(first, guard)).to.equal(true)
      expect(slot.install(new AppRequest(), guard)).to.equal(false)
      expect(first.leakGuard).to.equal(guard)
      const { req, res } = fakeRequest()
      const scope = guard.begin(req as never, res as never)
      const before = Reflect.ownKeys(first).length
      slot.set(first, scope, guard)
      // The scope and the guard that owns it: nothing else is written per request.
      expect(Reflect.ownKeys(first).length - before).to.equal(2)
      expect(Object.keys(first)).to.deep.equal([])
      expect(first.scope).to.equal(scope)
      expect(slot.get(first)).to.equal(scope)
      expect(first.signal).to.equal(scope.signal)
      expect(slot.held(first, guard)).to.equal(true)
      slot.routeTimeout(1_000)(first)
      expect(() => slot.routeTimeout(-1)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
      res.emit('close')
    })

    it('warns LG_WARN_MOUNTED_AFTER_ROUTES when signal is read on a request no guard ran before, and LG_WARN_TWO_GUARDS for a second guard with other options', async () => {
      const slot = createScopeSlot({ name: 'spi-test-warn', afterRoutes: 'mounted after the routes' })
      const guard = createGuard({ timeout: false })
      const other = createGuard({ timeout: 5_000 })
      class AppRequest {}
      const unscoped = new AppRequest() as { signal?: AbortSignal }
      slot.install(unscoped, guard)
      const codes: string[] = []
      const onWarning = (warning: Error & { code?: string }): void => void codes.push(warning.code!)
      process.on('warning', onWarning)
      try {
        expect(unscoped.signal).to.equal(undefined)
        const scoped = new AppRequest()
        const { req, res } = fakeRequest()
        slot.set(scoped, guard.begin(req as never, res as never), guard)
        expect(slot.held(scoped, other)).to.equal(true)
        res.emit('close')
        await new Promise((resolve) => setImmediate(resolve))
      } finally {
        process.off('warning', onWarning)
      }
      expect(codes).to.deep.equal(['LG_WARN_MOUNTED_AFTER_ROUTES', 'LG_WARN_TWO_GUARDS'])
    })

    it('withGuard() exposes the guard as a read-only, enumerable property of the middleware', () => {
      const guard = createGuard({ timeout: false })
      const mw = withGuard(function middleware() {}, guard)
      expect(mw.guard).to.equal(guard)
      expect(Object.getOwnPropertyDescriptor(mw, 'guard')).to.include({ enumerable: true, writable: false })
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
