/**
 * Types shared across core's modules. They live here, apart from the classes, so that modules which
 * only need a type do not import each other (guard ↔ shutdown, guard ↔ leak-log, context ↔ scope).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'

export type AnyRequest = IncomingMessage | Http2ServerRequest
export type AnyResponse = ServerResponse | Http2ServerResponse
