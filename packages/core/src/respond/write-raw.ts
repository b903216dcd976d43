import type { ServerResponse } from 'node:http'
import type { LeakGuardError } from '../errors.js'
import type { AnswerBody } from './answer.js'
import type { AnyResponse } from '../types.js'

/**
 * Writes a whole answer on a node:http (or HTTP/2 compat) response that has sent nothing yet:
 * `status`, `headers`, the body with its `Content-Type` and `Content-Length`, then ends it.
 * `connectionClose` asks an HTTP/1 client to reconnect for its next request.
 */
export function sendAnswer(res: AnyResponse, status: number, headers: Readonly<Record<string, string>> | undefined, body: AnswerBody, connectionClose: boolean): void {
  const raw = res as ServerResponse
  raw.statusCode = status
  if (headers !== undefined) {
    for (const name of Object.keys(headers)) raw.setHeader(name, headers[name])
  }
  if (connectionClose && !('stream' in res)) raw.setHeader('Connection', 'close')
  raw.setHeader('Content-Type', body.type)
  raw.setHeader('Content-Length', Buffer.byteLength(body.payload))
  raw.end(body.payload)
}

/**
 * Writes the answer for an aborted request straight to the node:http response, then neutralises the
 * handler's late writes: after a 503 went out, `res.setHeader()` would throw ERR_HTTP_HEADERS_SENT and
 * `res.write()` would emit ERR_STREAM_WRITE_AFTER_END on a response nobody listens to, which crashes
 * the process. Used where the framework has no safe error path for an abort (Express, plain node:http).
 */
export function writeRaw(res: AnyResponse, error: LeakGuardError, body: AnswerBody): void {
  // The handler may still hold an unread request body; a keep-alive connection whose request body was
  // not consumed cannot carry the next request, so ask the client to reconnect instead of risking a reset.
  const req = (res as ServerResponse).req as { complete?: boolean } | undefined
  sendAnswer(res, error.statusCode, error.headers, body, req !== undefined && req.complete === false)
  neutraliseLateWrites(res as ServerResponse)
}

function dropHeaderCall(this: ServerResponse): ServerResponse {
  return this
}

function dropWrite(this: ServerResponse, ...args: unknown[]): boolean {
  const callback = args[args.length - 1]
  if (typeof callback === 'function') process.nextTick(callback)
  return true
}

function dropEnd(this: ServerResponse, ...args: unknown[]): ServerResponse {
  const callback = args[args.length - 1]
  if (typeof callback === 'function') process.nextTick(callback)
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

/**
 * Cuts a response whose headers went out (Go's WriteTimeout): the client sees an incomplete response.
 * On HTTP/2, `destroy()` without an error resets the stream with NO_ERROR, which clients read as a
 * complete response: reset it with INTERNAL_ERROR instead.
 */
export function cut(res: AnyResponse): void {
  const stream = (res as { stream?: { close(code: number): void } }).stream
  if (stream !== undefined) stream.close(0x2 /* NGHTTP2_INTERNAL_ERROR */)
  else res.destroy()
}
