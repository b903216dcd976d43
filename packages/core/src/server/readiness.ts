import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import { readinessAnswer, type ClosingState } from '../respond/readiness.js'

/**
 * A plain `node:http` handler (also an Express handler) for a readiness probe.
 *
 * @example
 * const shutdown = createShutdown(server, { guard })
 * app.get('/readyz', createReadinessHandler(guard))
 */
export function createReadinessHandler(state: ClosingState): (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void {
  return function readiness(req, res) {
    const answer = readinessAnswer(state, req.httpVersionMajor >= 2)
    const raw = res as ServerResponse
    raw.statusCode = answer.status
    for (const name of Object.keys(answer.headers)) raw.setHeader(name, answer.headers[name])
    raw.end(answer.body)
  }
}
