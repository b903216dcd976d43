import { describe, expect, test } from 'tstyche'
import type { Response as UndiciResponse } from 'undici'
import {
  ClientClosedError,
  createDispatcher,
  createGuard,
  createThreadPool,
  currentScope,
  currentSignal,
  errorCodes,
  isLeakGuardError,
  LeakGuardError,
  PoolFullError,
  type Dispatcher,
  type ErrorCode,
  type Guard,
  type PoolStats,
  type RequestScope,
  type ThreadPool,
} from '@leak-guard/core'
import { createHttpClient, HttpClientClosedError, type HttpClient } from '@leak-guard/core/client'

describe('createGuard()', () => {
  test('accepts the documented options and returns a Guard', () => {
    expect(createGuard()).type.toBe<Guard>()
    expect(createGuard({ timeout: 5_000, timeoutStatus: 504, retryAfter: false, context: false, leakGracePeriod: 1_000, captureStacks: true })).type.toBe<Guard>()
    expect(createGuard({ timeout: false, timeoutBody: { error: 'busy' } })).type.toBe<Guard>()
  })

  test('rejects options of the wrong type and unknown options', () => {
    expect(createGuard({ timeout: '5s' })).type.toRaiseError()
    expect(createGuard({ timeout: true })).type.toRaiseError()
    expect(createGuard({ retryAfter: '1' })).type.toRaiseError()
    expect(createGuard({ timout: 5_000 })).type.toRaiseError()
  })
})

describe('the request scope', () => {
  test('currentScope() and currentSignal() may be undefined outside a request', () => {
    expect(currentScope()).type.toBe<RequestScope | undefined>()
    expect(currentSignal()).type.toBe<AbortSignal | undefined>()
  })

  test('carries a signal, a deadline and typed spawn()', () => {
    const scope = currentScope()!
    expect(scope.signal).type.toBe<AbortSignal>()
    expect(scope.remaining()).type.toBe<number>()
    expect(scope.spawn(async () => 42)).type.toBe<Promise<number>>()
    expect(scope.detach((signal) => signal.aborted)).type.toBe<Promise<boolean>>()
    expect(scope.setTimeout(false)).type.toBe<void>()
    expect(scope.setTimeout('1s')).type.toRaiseError()
    expect(scope.onAbort(() => {})).type.toBe<() => void>()
  })
})

describe('createDispatcher()', () => {
  const dispatcher = createDispatcher({ concurrency: 8, maxQueue: 100, queueTimeout: 2_000, maxPerRequest: 4 })

  test('returns a Dispatcher whose run() resolves with the work’s result', () => {
    expect(dispatcher).type.toBe<Dispatcher>()
    expect(dispatcher.run(async () => 'row')).type.toBe<Promise<string>>()
    expect(dispatcher.run(() => 1)).type.toBe<Promise<number>>()
    expect(dispatcher.run((signal) => signal)).type.toBe<Promise<AbortSignal>>()
    expect(dispatcher.run(async () => 1, { signal: new AbortController().signal, scope: null })).type.toBe<Promise<number>>()
    expect(dispatcher.stats()).type.toBe<PoolStats>()
  })

  test('rejects options of the wrong type', () => {
    expect(createDispatcher({ concurrency: '8' })).type.toRaiseError()
    expect(createDispatcher({ maxQueue: true })).type.toRaiseError()
    expect(createDispatcher({ queueTimeout: '2s' })).type.toRaiseError()
    expect(createDispatcher({ concurency: 8 })).type.toRaiseError()
    expect(dispatcher.run(42)).type.toRaiseError()
    expect(dispatcher.run(async () => 1, { signal: 'x' })).type.toRaiseError()
  })
})

describe('createThreadPool()', () => {
  test('needs a filename; run() resolves with the type asked for', () => {
    const pool = createThreadPool({ filename: new URL('file:///worker.mjs'), threads: 2, idleTimeout: false })
    expect(pool).type.toBe<ThreadPool>()
    expect(pool.run<number>(1)).type.toBe<Promise<number>>()
    expect(pool.run(1)).type.toBe<Promise<unknown>>()
    expect(pool.run(1, { name: 'hash', transferList: [] })).type.toBe<Promise<unknown>>()
    expect(createThreadPool({ threads: 2 })).type.toRaiseError()
    expect(createThreadPool({ filename: '/w.mjs', threads: '2' })).type.toRaiseError()
  })
})

describe('createHttpClient()', () => {
  test('returns an HttpClient whose fetch() resolves with undici’s Response', () => {
    const client = createHttpClient({ connections: 16, maxQueue: 64, timeout: 2_000 })
    expect(client).type.toBe<HttpClient>()
    expect(client.fetch('http://localhost/')).type.toBe<Promise<UndiciResponse>>()
    expect(client.installGlobal()).type.toBe<() => void>()
    expect(createHttpClient({ timeout: '2s' })).type.toRaiseError()
    expect(createHttpClient({ connections: 16, maxQueue: true })).type.toRaiseError()
  })
})

describe('errors', () => {
  test('carry a code from the table and narrow with instanceof', () => {
    expect(new PoolFullError(1).code).type.toBe<ErrorCode>()
    expect<'LG_ERR_CLIENT_HTTP_CLOSED'>().type.toBeAssignableTo<ErrorCode>()
    expect<'LG_ERR_NOT_A_CODE'>().type.not.toBeAssignableTo<ErrorCode>()
    expect(errorCodes.LG_ERR_POOL_FULL.status).type.toBe<503>()
    expect(new HttpClientClosedError()).type.toBeAssignableTo<LeakGuardError>()
    expect(new ClientClosedError()).type.toBeAssignableTo<LeakGuardError>()
    const value: unknown = undefined
    if (isLeakGuardError(value)) expect(value).type.toBe<LeakGuardError>()
  })
})
