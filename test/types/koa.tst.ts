import type { Context, Middleware } from 'koa'
import { expect, test } from 'tstyche'
import type { Guard, RequestScope } from '@leak-guard/core'
import { leakGuard, withTimeout, type LeakGuardMiddleware } from '@leak-guard/koa'

test('ctx.signal, ctx.scope and ctx.leakGuard are typed in every Koa middleware', () => {
  expect<Context['signal']>().type.toBe<AbortSignal>()
  expect<Context['scope']>().type.toBe<RequestScope>()
  expect<Context['leakGuard']>().type.toBe<Guard>()
})

test('leakGuard() is a Koa middleware that exposes its guard', () => {
  expect(leakGuard()).type.toBe<LeakGuardMiddleware>()
  expect(leakGuard().guard).type.toBe<Guard>()
  expect(leakGuard()).type.toBeAssignableTo<Middleware>()
  expect(withTimeout(30_000)).type.toBeAssignableTo<Middleware>()
})

test('options of the wrong type do not compile', () => {
  expect(leakGuard({ timeout: '5s' })).type.toRaiseError()
  expect(leakGuard({ leakGracePeriod: false })).type.toRaiseError()
  expect(withTimeout(true)).type.toRaiseError()
})
