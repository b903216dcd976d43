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

const json = { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' }

function freeze(status: 200 | 503, headers: Record<string, string>, body: string): ReadinessAnswer {
  return Object.freeze({ status, headers: Object.freeze(headers), body })
}

const ready = freeze(200, json, '{"status":"ok"}')
// Connection: close makes a load balancer that keeps probe connections open reconnect, and so notice
// the instance going away even if it reuses connections. HTTP/2 forbids the header: GOAWAY does that.
const notReady = freeze(503, { ...json, Connection: 'close', 'Retry-After': '1' }, '{"status":"shutting down"}')
const notReadyH2 = freeze(503, { ...json, 'Retry-After': '1' }, '{"status":"shutting down"}')

/**
 * The readiness answer for `state`: 200 while serving, 503 + `Connection: close` from the first moment
 * of shutdown. Pass `h2: true` for an HTTP/2 request: its headers then carry no `Connection` (not
 * allowed there). Adapters set every header of the answer as it is.
 */
export function readinessAnswer(state: ClosingState, h2 = false): ReadinessAnswer {
  if (!state.closing) return ready
  return h2 ? notReadyH2 : notReady
}
