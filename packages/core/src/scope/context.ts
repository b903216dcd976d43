import { AsyncLocalStorage } from 'node:async_hooks'
import type { RequestScope } from './request-scope.js'

/**
 * The AsyncLocalStorage that carries the current request scope. It lives on `globalThis` under a
 * `Symbol.for` key so that two copies of @leak-guard/core (an ESM and a CJS one, or two versions in
 * node_modules) share one store and `currentScope()` from either copy sees the same request.
 */
const kStore = Symbol.for('leak-guard.context.v1')

type GlobalWithStore = typeof globalThis & { [kStore]?: AsyncLocalStorage<RequestScope> }

export const storage: AsyncLocalStorage<RequestScope> =
  ((globalThis as GlobalWithStore)[kStore] ??= new AsyncLocalStorage<RequestScope>())

/** The scope of the request whose code is running now, or `undefined` outside any request. */
export function currentScope(): RequestScope | undefined {
  return storage.getStore()
}

/** The AbortSignal of the request whose code is running now, or `undefined` outside any request. */
export function currentSignal(): AbortSignal | undefined {
  return storage.getStore()?.signal
}

const kEmitScope = Symbol('leak-guard.emit.scope')
const kEmitOriginal = Symbol('leak-guard.emit.original')

interface BindableRequest {
  headers: Record<string, string | string[] | undefined>
  emit(event: string | symbol, ...args: unknown[]): boolean
  [kEmitScope]?: RequestScope
  [kEmitOriginal]?: (event: string | symbol, ...args: unknown[]) => boolean
}

function emitInScope(this: BindableRequest, event: string | symbol, ...args: unknown[]): boolean {
  return storage.run(this[kEmitScope]!, () => this[kEmitOriginal]!.call(this, event, ...args))
}

/**
 * Re-enters `scope` whenever the request stream emits. Middleware that reads the body with plain event
 * listeners and calls the next one from `'end'` runs in the context of the connection, not the request,
 * and AsyncLocalStorage would lose the request there (raw-body, under `express.json()`, and Fastify's
 * parsers bind their callbacks themselves; older or hand-written readers do not). Only requests that
 * carry a body pay for this. Used by the Express adapter.
 */
export function bindRequestEvents(req: unknown, scope: RequestScope): void {
  const r = req as BindableRequest
  const headers = r.headers
  const length = headers['content-length']
  if ((length === undefined || length === '0') && headers['transfer-encoding'] === undefined) return
  r[kEmitScope] = scope
  r[kEmitOriginal] = r.emit
  r.emit = emitInScope
}
