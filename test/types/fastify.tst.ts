import type { FastifyInstance, FastifyRequest } from 'fastify'
import { expect, test } from 'tstyche'
import type { Guard, RequestScope } from '@leak-guard/core'
import leakGuardDefault, { leakGuard, type LeakGuardPluginOptions, type LeakGuardRouteConfig } from '@leak-guard/fastify'

test('request.scope is a RequestScope and fastify.leakGuard the Guard', () => {
  expect<FastifyRequest['scope']>().type.toBe<RequestScope>()
  expect<FastifyRequest['scope']['signal']>().type.toBe<AbortSignal>()
  expect<FastifyInstance['leakGuard']>().type.toBe<Guard>()
})

test('the plugin is the default export too, and its options are typed', () => {
  expect(leakGuardDefault).type.toBe(leakGuard)
  expect<{ timeout: 5_000; shutdown: false }>().type.toBeAssignableTo<LeakGuardPluginOptions>()
  expect<{ timeout: '5s' }>().type.not.toBeAssignableTo<LeakGuardPluginOptions>()
  expect<{ shutdown: { gracePeriod: 'long' } }>().type.not.toBeAssignableTo<LeakGuardPluginOptions>()
})

test('a route sets its own timeout under config.leakGuard, a number or false', () => {
  expect<{ timeout: false }>().type.toBeAssignableTo<LeakGuardRouteConfig>()
  expect<{ timeout: 30_000 }>().type.toBeAssignableTo<LeakGuardRouteConfig>()
  expect<{ timeout: '30s' }>().type.not.toBeAssignableTo<LeakGuardRouteConfig>()
  const register = async (app: FastifyInstance) => {
    await app.register(leakGuard, { timeout: 5_000 })
    app.get('/slow', { config: { leakGuard: { timeout: 30_000 } } }, async (request) => request.scope.signal.aborted)
  }
  expect(register).type.not.toRaiseError()
})
