import type { Server as HttpServer } from 'node:http'
import type { Http2SecureServer, Http2Server } from 'node:http2'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import { InvalidOptionError } from '../errors.js'
import { checkKeys, integer, integerOrFalse, invalid, milliseconds, millisecondsOrFalse } from '../options.js'

/** A server leak-guard can harden and drain: `http`, `https`, or `http2` (with or without `allowHTTP1`). */
export type AnyServer = HttpServer | Http2Server | Http2SecureServer

export interface HardenOptions {
  /**
   * Time a client has to send the complete request headers, in milliseconds (Node's `headersTimeout`).
   * A client still trickling headers after it gets `408` and its socket is closed. `false` turns it off.
   * @default 10000
   */
  headersTimeout?: number | false
  /**
   * Time a client has to send the whole request, headers and body, in milliseconds (Node's
   * `requestTimeout`). Must be ≥ `headersTimeout`. It bounds how long the *client* may take to send;
   * the handler's own deadline is the guard's `timeout`. `false` turns it off.
   * @default 30000
   */
  requestTimeout?: number | false
  /**
   * How long an idle keep-alive connection stays open, in milliseconds. Above the idle timeout of the
   * load balancers in front (AWS ALB 60 s, nginx upstream `keepalive_timeout` 60 s, GCP 600 s): the
   * balancer must be the side that closes an idle connection, otherwise it may send a request on a
   * socket the app is closing at the same moment and the client gets a 502.
   * @default 65000
   */
  keepAliveTimeout?: number
  /**
   * How often Node checks connections against `headersTimeout`/`requestTimeout`, in milliseconds. Node's
   * 30 s default lets a slow client overstay the header deadline by up to 30 s; 500 ms enforces the
   * deadlines within about half a second at the cost of one cheap timer tick.
   * @default 500
   */
  connectionsCheckingInterval?: number
  /**
   * Requests served on one connection before Node closes it (`Connection: close`), so long-lived
   * connections get rebalanced. `false` for no limit.
   * @default false
   */
  maxRequestsPerSocket?: number | false
  /**
   * Headers Node parses per request; extra headers are dropped, not rejected (Node's total header size
   * limit, `--max-http-header-size`, 16 KiB, still applies).
   * @default 100
   */
  maxHeadersCount?: number
}

export interface ResolvedHardenOptions {
  headersTimeout: number | false
  requestTimeout: number | false
  keepAliveTimeout: number
  connectionsCheckingInterval: number
  maxRequestsPerSocket: number | false
  maxHeadersCount: number
}

const hardenKeys = ['headersTimeout', 'requestTimeout', 'keepAliveTimeout', 'connectionsCheckingInterval', 'maxRequestsPerSocket', 'maxHeadersCount'] as const

export function resolveHardenOptions(options?: HardenOptions): ResolvedHardenOptions {
  const o = checkKeys('hardenServer()', options, hardenKeys)
  const resolved: ResolvedHardenOptions = {
    headersTimeout: millisecondsOrFalse('headersTimeout', o.headersTimeout, 10_000),
    requestTimeout: millisecondsOrFalse('requestTimeout', o.requestTimeout, 30_000),
    keepAliveTimeout: milliseconds('keepAliveTimeout', o.keepAliveTimeout, 65_000),
    connectionsCheckingInterval: milliseconds('connectionsCheckingInterval', o.connectionsCheckingInterval, 500),
    maxRequestsPerSocket: integerOrFalse('maxRequestsPerSocket', o.maxRequestsPerSocket, false),
    maxHeadersCount: integer('maxHeadersCount', o.maxHeadersCount, 100),
  }
  const { headersTimeout, requestTimeout, connectionsCheckingInterval } = resolved
  if (headersTimeout !== false && requestTimeout !== false && headersTimeout > requestTimeout) {
    throw new InvalidOptionError(
      'headersTimeout',
      `Expected \`headersTimeout\` (${headersTimeout}) to be ≤ \`requestTimeout\` (${requestTimeout}): the headers are part of the request`,
    )
  }
  const tightest = headersTimeout !== false ? headersTimeout : requestTimeout
  if (tightest !== false && connectionsCheckingInterval > tightest) {
    throw new InvalidOptionError(
      'connectionsCheckingInterval',
      `Expected \`connectionsCheckingInterval\` (${connectionsCheckingInterval}) to be ≤ the deadline it enforces (${tightest}); a longer interval lets clients overstay it`,
    )
  }
  return resolved
}

interface NodeServerFields {
  headersTimeout?: number
  requestTimeout?: number
  keepAliveTimeout?: number
  connectionsCheckingInterval?: number
  maxRequestsPerSocket?: number | null
  maxHeadersCount?: number | null
  listening: boolean
}

export function isServer(value: unknown): value is AnyServer {
  return value !== null && typeof value === 'object' && typeof (value as AnyServer).listen === 'function' && typeof (value as AnyServer).on === 'function' && 'listening' in value
}

/**
 * Node arms its connection check (`checkConnections`, which enforces `headersTimeout` and
 * `requestTimeout`) in a `'listening'` listener named `setupConnectionsTracking`, reading
 * `server.connectionsCheckingInterval` at that moment (Node 18.? to 24; http, https and http2 with
 * `allowHTTP1`). Setting the property before `listen()` is enough. On a server already listening, the
 * property is read too late; calling that same listener again clears the old interval and arms a new
 * one with the new period. Returns false when this Node has no such listener.
 */
function rearmConnectionsCheck(server: AnyServer): boolean {
  for (const listener of server.listeners('listening')) {
    if (typeof listener === 'function' && listener.name === 'setupConnectionsTracking') {
      ;(listener as (this: AnyServer) => void).call(server)
      return true
    }
  }
  return false
}

/**
 * Fallback for a Node whose check cannot be re-armed: an unref'd sweep of our own that closes
 * connections that have not delivered their first request within `headersTimeout`. Stops when the
 * server closes.
 */
function startHeaderSweep(server: AnyServer, headersTimeout: number, interval: number): void {
  const waiting = new Map<Socket, number>()
  const event = server instanceof TlsServer ? 'secureConnection' : 'connection'
  const onConnection = (socket: Socket): void => {
    waiting.set(socket, Date.now())
    socket.once('close', () => waiting.delete(socket))
  }
  const onRequest = (req: { socket: Socket }): void => {
    waiting.delete(req.socket)
  }
  const timer = setInterval(() => {
    const now = Date.now()
    for (const [socket, since] of waiting) {
      if (now - since >= headersTimeout) {
        waiting.delete(socket)
        socket.destroy()
      }
    }
  }, interval)
  timer.unref()
  server.on(event, onConnection)
  server.prependListener('request', onRequest as never)
  server.once('close', () => {
    clearInterval(timer)
    server.removeListener(event, onConnection)
    server.removeListener('request', onRequest as never)
    waiting.clear()
  })
}

/**
 * Applies safe socket-level defaults to a server (Go's `ReadHeaderTimeout`/`ReadTimeout`/`IdleTimeout`),
 * so a slow client cannot hold a socket for minutes: header and request deadlines enforced within
 * about half a second, bounded keep-alive idles, bounded header count. Works before or after
 * `listen()`, on `http`, `https` and `http2` servers (deadlines apply to HTTP/1 connections; HTTP/2
 * sessions are bounded by the guard's request `timeout`). Returns the settings applied.
 *
 * @example
 * const server = app.listen(3000)
 * hardenServer(server, { headersTimeout: 5_000 })
 */
export function hardenServer(server: AnyServer, options?: HardenOptions): Readonly<ResolvedHardenOptions> {
  if (!isServer(server)) throw invalid('server', 'an http, https or http2 server', server)
  const resolved = resolveHardenOptions(options)
  const target = server as unknown as NodeServerFields
  // Node spells "off" as 0 for these three; leak-guard spells it `false`.
  target.headersTimeout = resolved.headersTimeout === false ? 0 : resolved.headersTimeout
  target.requestTimeout = resolved.requestTimeout === false ? 0 : resolved.requestTimeout
  target.keepAliveTimeout = resolved.keepAliveTimeout
  target.maxRequestsPerSocket = resolved.maxRequestsPerSocket === false ? 0 : resolved.maxRequestsPerSocket
  target.maxHeadersCount = resolved.maxHeadersCount
  target.connectionsCheckingInterval = resolved.connectionsCheckingInterval
  if (target.listening && !rearmConnectionsCheck(server) && resolved.headersTimeout !== false) {
    startHeaderSweep(server, resolved.headersTimeout, resolved.connectionsCheckingInterval)
  }
  return Object.freeze(resolved)
}
