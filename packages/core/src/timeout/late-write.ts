import type { ServerResponse } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import type { LeakGuardError } from '../errors.js'

type AnyResponse = ServerResponse | Http2ServerResponse

/**
 * Writes the answer for an aborted request straight to the node:http response, then neutralises the
 * handler's late writes: after a 503 went out, `res.setHeader()` would throw ERR_HTTP_HEADERS_SENT and
 * `res.write()` would emit ERR_STREAM_WRITE_AFTER_END on a response nobody listens to, which crashes
 * the process. Used where the framework has no safe error path for an abort (Express, plain node:http).
 */
export function answerAbortedResponse(res: AnyResponse, error: LeakGuardError, body: { payload: string; type: string }): void {
  const raw = res as ServerResponse
  raw.statusCode = error.statusCode
  const headers = error.headers
  if (headers !== undefined) {
    for (const name of Object.keys(headers)) raw.setHeader(name, headers[name]!)
  }
  // The handler may still hold an unread request body; a keep-alive connection whose request body was
  // not consumed cannot carry the next request, so ask the client to reconnect instead of risking a reset.
  const req = raw.req as { complete?: boolean } | undefined
  if (req !== undefined && req.complete === false && !('stream' in res)) raw.setHeader('Connection', 'close')
  raw.setHeader('Content-Type', body.type)
  raw.setHeader('Content-Length', Buffer.byteLength(body.payload))
  raw.end(body.payload)
  neutraliseLateWrites(raw)
}

function dropHeaderCall(this: ServerResponse): ServerResponse {
  return this
}

function dropWrite(this: ServerResponse, ...args: unknown[]): boolean {
  const callback = args[args.length - 1]
  if (typeof callback === 'function') process.nextTick(callback as () => void)
  return true
}

function dropEnd(this: ServerResponse, ...args: unknown[]): ServerResponse {
  const callback = args[args.length - 1]
  if (typeof callback === 'function') process.nextTick(callback as () => void)
  return this
}

const headerMethods = ['setHeader', 'appendHeader', 'removeHeader', 'writeHead', 'flushHeaders', 'setHeaders', 'addTrailers', 'writeContinue', 'writeEarlyHints'] as const

/**
 * Replaces the writing methods of one response (own properties, only on the rare aborted path) with
 * no-ops that never throw. Reading methods (`getHeader`, `headersSent`) keep working.
 */
export function neutraliseLateWrites(res: ServerResponse): void {
  const target = res as unknown as Record<string, unknown>
  for (const name of headerMethods) {
    if (typeof target[name] === 'function') target[name] = dropHeaderCall
  }
  target.write = dropWrite
  target.end = dropEnd
}
