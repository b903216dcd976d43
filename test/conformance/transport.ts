import { once } from 'node:events'
import { Agent, get } from 'node:http'
import { Agent as HttpsAgent, get as httpsGet, request as httpsRequest } from 'node:https'
import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import { connect as tlsConnect } from 'node:tls'
import type { IncomingMessage } from 'node:http'
import { rawRequest, rawSocket, send, type Reply, type SendOptions } from '../helpers/http.js'

/** One reusable connection: an HTTP/1 keep-alive agent with one socket, or one HTTP/2 session. */
export interface Client {
  send(options: Omit<SendOptions, 'agent'>): Promise<Reply>
}

/** A request that was sent and whose response is pending; `drop()` is the client going away. */
export interface Pending {
  drop(): void
}

export interface Partial {
  status: number
  body: string
  /** Whether the response ended normally (HTTP/1 `res.complete`; HTTP/2 end of stream without a reset). */
  complete: boolean
}

/**
 * How the conformance suite talks to a server. Each transport uses real sockets; everything it opens is
 * closed by `reset()`, which the suite calls in afterEach.
 */
export interface Transport {
  readonly name: string
  /** One request; HTTP/1 on a fresh connection, HTTP/2 on the transport's shared session. */
  send(port: number, options: Omit<SendOptions, 'agent'>): Promise<Reply>
  client(port: number): Client
  /** Sends a request and resolves once it is written; the response is never read. */
  hang(port: number, method: string, path: string, id: string, json?: unknown): Promise<Pending>
  /** GETs `path` and reads until the response closes, however it closes. */
  partial(port: number, path: string, id: string): Promise<Partial>
  reset(): void
}

/** Plain HTTP/1.1 over TCP: the helpers the suite always used, unchanged. */
export function http1(): Transport {
  const agents: Agent[] = []
  return {
    name: 'HTTP/1.1',
    send: (port, options) => send(port, options),
    client(port) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      agents.push(agent)
      return { send: (options) => send(port, { ...options, agent }) }
    },
    async hang(port, method, path, id, json) {
      const socket = await rawSocket(port, rawRequest(method, path, id, json))
      return { drop: () => socket.destroy() }
    },
    partial: (port, path, id) => partialHttp1((cb) => get({ host: '127.0.0.1', port, path, headers: { 'x-id': id }, agent: false }, cb)),
    reset() {
      for (const a of agents.splice(0)) a.destroy()
    },
  }
}

function partialHttp1(open: (cb: (res: IncomingMessage) => void) => { on(event: 'error', fn: (error: Error) => void): unknown }): Promise<Partial> {
  return new Promise((resolve, reject) => {
    open((res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }))
      res.on('error', () => {})
    }).on('error', reject)
  })
}

/**
 * HTTP/1.1 over TLS, for servers that speak HTTP/1.1 through `node:http2`'s `allowHTTP1` (ALPN
 * `http/1.1`): the path Express takes on an HTTP/2 server, since Express cannot serve HTTP/2 requests.
 */
export function https1(): Transport {
  const agents: HttpsAgent[] = []
  const tls = { rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }
  const sendTls = (port: number, options: Omit<SendOptions, 'agent'>, agent: HttpsAgent | false): Promise<Reply> =>
    send(port, { ...options, agent: agent as unknown as Agent | undefined }, httpsRequest as unknown as typeof import('node:http').request, tls)
  return {
    name: 'HTTP/1.1 over TLS',
    send: (port, options) => sendTls(port, options, false),
    client(port) {
      const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ...tls })
      agents.push(agent)
      return { send: (options) => sendTls(port, options, agent) }
    },
    async hang(port, method, path, id, json) {
      const socket = tlsConnect({ host: '127.0.0.1', port, ...tls })
      socket.on('error', () => {})
      await once(socket, 'secureConnect')
      socket.write(rawRequest(method, path, id, json))
      return { drop: () => socket.destroy() }
    },
    partial: (port, path, id) => partialHttp1((cb) => httpsGet({ host: '127.0.0.1', port, path, headers: { 'x-id': id }, agent: false, ...tls }, cb)),
    reset() {
      for (const a of agents.splice(0)) a.destroy()
    },
  }
}

/**
 * HTTP/2 over TLS. `send()` shares one session per port (as HTTP/2 clients do), `client()` opens its
 * own, and a client going away is a stream reset (`RST_STREAM CANCEL`): the connection stays up, so only
 * response-based detection sees it.
 */
export function h2(): Transport {
  const sessions = new Set<ClientHttp2Session>()
  const shared = new Map<number, ClientHttp2Session>()
  const open = (port: number): ClientHttp2Session => {
    const session = h2connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false })
    session.on('error', () => {})
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    return session
  }
  const sharedSession = (port: number): ClientHttp2Session => {
    let session = shared.get(port)
    if (session === undefined || session.closed || session.destroyed) {
      session = open(port)
      shared.set(port, session)
    }
    return session
  }
  const start = (session: ClientHttp2Session, options: Omit<SendOptions, 'agent'>): ClientHttp2Stream => {
    const payload = options.json === undefined ? undefined : JSON.stringify(options.json)
    const stream = session.request({
      ':method': options.method ?? 'GET',
      ':path': options.path,
      ...(options.id === undefined ? {} : { 'x-id': options.id }),
      ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
      ...options.headers,
    })
    stream.end(payload)
    return stream
  }
  const sendOn = (session: ClientHttp2Session, options: Omit<SendOptions, 'agent'>, reused: boolean): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const started = performance.now()
      const stream = start(session, options)
      const chunks: Buffer[] = []
      let headers: Record<string, string | string[] | undefined> = {}
      stream.on('response', (h) => (headers = h as typeof headers))
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('error', reject)
      stream.on('end', () =>
        resolve({
          status: Number(headers[':status'] ?? 0),
          headers,
          body: Buffer.concat(chunks).toString('utf8'),
          reusedSocket: reused,
          elapsed: performance.now() - started,
        }),
      )
    })
  return {
    name: 'HTTP/2',
    send: (port, options) => sendOn(sharedSession(port), options, false),
    client(port) {
      let session: ClientHttp2Session | undefined
      let used = 0
      return {
        send(options) {
          const fresh = session === undefined || session.closed || session.destroyed
          if (fresh) {
            session = open(port)
            used = 0
          }
          return sendOn(session!, options, used++ > 0)
        },
      }
    },
    async hang(port, method, path, id, json) {
      const stream = start(sharedSession(port), { method, path, id, json })
      stream.on('error', () => {})
      // Written once the session flushes it; callers wait for the handler to see it (probe.started).
      return { drop: () => stream.close(constants.NGHTTP2_CANCEL) }
    },
    partial(port, path, id) {
      return new Promise((resolve) => {
        const stream = start(sharedSession(port), { path, id })
        let body = ''
        let status = 0
        let ended = false
        stream.setEncoding('utf8')
        stream.on('response', (h) => (status = Number(h[':status'])))
        stream.on('data', (chunk: string) => (body += chunk))
        stream.on('end', () => (ended = true))
        stream.on('error', () => {})
        stream.on('close', () => resolve({ status, body, complete: ended && stream.rstCode === constants.NGHTTP2_NO_ERROR }))
      })
    },
    reset() {
      for (const session of sessions) session.destroy()
      shared.clear()
    },
  }
}
