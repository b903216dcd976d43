import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import { invalid } from '../options.js'
import { readinessAnswer, type ClosingState } from '../respond/readiness.js'

/**
 * Checks, where a readiness route is declared, that `state` is a guard or a shutdown: handed the
 * middleware itself (`readiness(mw)` for `readiness(mw.guard)`) a probe would answer 200 through the
 * whole shutdown. Every adapter's `readiness()` calls it.
 */
export function checkClosingState(state: unknown): ClosingState {
  if (state === null || typeof state !== 'object' || typeof (state as Partial<ClosingState>).closing !== 'boolean') {
    throw invalid('state', 'a Guard (`middleware.guard`, `app.leakGuard`) or a GracefulShutdown', state)
  }
  return state as ClosingState
}

/**
 * A plain `node:http` handler (also an Express handler) for a readiness probe.
 *
 * @example
 * const shutdown = createShutdown(server, { guard })
 * app.get('/readyz', createReadinessHandler(guard))
 */
export function createReadinessHandler(state: ClosingState): (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void {
  checkClosingState(state)
  return function readiness(req, res) {
    const answer = readinessAnswer(state, req.httpVersionMajor >= 2)
    const raw = res as ServerResponse
    raw.statusCode = answer.status
    for (const name of Object.keys(answer.headers)) raw.setHeader(name, answer.headers[name])
    raw.end(answer.body)
  }
}
