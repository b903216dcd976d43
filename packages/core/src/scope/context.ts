import { storage, type RequestScope } from './request-scope.js'

// The store lives with the scope it carries (one import direction: context → request-scope).
export { storage, currentScope, currentSignal } from './request-scope.js'

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
