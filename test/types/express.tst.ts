import type { Request, RequestHandler } from 'express'
import { expect, test } from 'tstyche'
import type { Guard, RequestScope } from '@leak-guard/core'
import { leakGuard, leakGuardErrorHandler, withTimeout, type LeakGuardMiddleware } from '@leak-guard/express'

test('req.signal is an AbortSignal and req.scope a RequestScope in every Express handler', () => {
  expect<Request['signal']>().type.toBe<AbortSignal>()
  expect<Request['scope']>().type.toBe<RequestScope>()
  const handler: RequestHandler = (req) => {
    expect(req.signal).type.toBe<AbortSignal>()
  }
  expect(handler).type.toBeAssignableTo<RequestHandler>()
})

test('leakGuard() is a middleware that exposes its guard', () => {
  expect(leakGuard()).type.toBe<LeakGuardMiddleware>()
  expect(leakGuard({ timeout: 5_000 }).guard).type.toBe<Guard>()
  expect(leakGuard()).type.toBeAssignableTo<RequestHandler>()
  expect(withTimeout(false)).type.toBeAssignableTo<RequestHandler>()
  expect(leakGuardErrorHandler()).type.not.toBeAssignableTo<string>()
})

test('options of the wrong type do not compile', () => {
  expect(leakGuard({ timeout: '5s' })).type.toRaiseError()
  expect(leakGuard({ context: 'yes' })).type.toRaiseError()
  expect(withTimeout('1s')).type.toRaiseError()
})
