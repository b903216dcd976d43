import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import { invalid } from '../options.js'

/** Anything that knows whether the server is shutting down: a `Guard` or a `GracefulShutdown`. */
export interface ClosingState {
  readonly closing: boolean
}

/** What a readiness probe answers: status, headers and a small JSON body. */
export interface ReadinessAnswer {
  status: 200 | 503
  headers: Record<string, string>
  body: string
}

const ready: ReadinessAnswer = Object.freeze({
  status: 200,
  headers: Object.freeze({ 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' }),
  body: '{"status":"ok"}',
}) as ReadinessAnswer

const notReady: ReadinessAnswer = Object.freeze({
  status: 503,
  // Connection: close makes a load balancer that keeps probe connections open reconnect, and so
  // notice the instance going away even if it reuses connections.
  headers: Object.freeze({ 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'close', 'Retry-After': '1' }),
  body: '{"status":"shutting down"}',
}) as ReadinessAnswer

/**
 * The readiness answer for `state`: 200 while serving, 503 + `Connection: close` from the first moment
 * of shutdown. Adapters map it onto their framework; `http2` requests get no `Connection` header (it
 * is not allowed there).
 */
export function readinessAnswer(state: ClosingState): ReadinessAnswer {
  return state.closing ? notReady : ready
}

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
    const answer = readinessAnswer(state)
    const raw = res as ServerResponse
    raw.statusCode = answer.status
    const h2 = req.httpVersionMajor >= 2
    for (const name of Object.keys(answer.headers)) {
      if (h2 && name === 'Connection') continue
      raw.setHeader(name, answer.headers[name]!)
    }
    raw.end(answer.body)
  }
}
