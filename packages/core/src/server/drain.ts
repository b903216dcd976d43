import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2Session, ServerHttp2Stream } from 'node:http2'
import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import type { AnyServer } from './harden.js'
import { defaultAnswer, sendAnswer, type AbortAnswer, type AnswerBody } from '../respond/index.js'

/** Node's own fields on a server socket: the response being written on it (cleared when it finishes). */
interface HttpSocket extends Socket {
  _httpMessage?: ServerResponse | null
  alpnProtocol?: string | false | null
}

type RequestListener = (...args: unknown[]) => void

/**
 * What the drain does with idle kept-alive HTTP/1 connections (see `ShutdownOptions.idleConnections`):
 * `'close'` closes them at once and answers requests that still arrive on them 503 + `Connection: close`;
 * `'serve'` leaves them open and serves one last request on each, answered with `Connection: close`.
 */
export type IdleConnections = 'close' | 'serve'

/** Counters one drain reports back to its shutdown. */
export interface DrainCounters {
  /** Responses (HTTP/1) and streams (HTTP/2) that finished during the drain, before the grace period ran out. */
  finished: number
  /** Requests answered 503 because they arrived during the drain. */
  rejected: number
  /** Sockets with a response in flight and HTTP/2 sessions destroyed by `force()`. */
  forced: number
}

/**
 * Tracks the connections of one server from the moment it is created (one `'close'` listener per
 * connection, nothing per request), and drains them on shutdown:
 * - requests that arrive during the drain are answered 503 + `Connection: close` before the app sees them
 *   (`'serve'`: the app serves them, answered with `Connection: close`, until the grace period ends);
 * - in-flight HTTP/1 responses get `Connection: close`, and their socket closes once they finish; a
 *   response whose headers already promised keep-alive keeps its socket open for the request the peer
 *   may send on it, answered with `Connection: close` (never reset), until the grace period ends;
 * - idle HTTP/1 sockets close at once, no waiting for `keepAliveTimeout` (`'serve'`: they stay open
 *   until used once, closed by the peer, or `force()`);
 * - HTTP/2 sessions get GOAWAY (`session.close()`), which lets open streams finish;
 * - `force()` destroys whatever is left.
 *
 * It finds the in-flight response of a socket through `socket._httpMessage`, the field Node's http
 * server sets while a response is assigned to the socket and clears when it finishes (stable since
 * Node 0.x; http-terminator and others rely on it too).
 */
const kDrain = Symbol('leak-guard.drain')
const kForget = Symbol('leak-guard.drain.forget')

interface Tagged {
  [kDrain]?: ServerDrain
}

/** One shared 'close' listener for every tracked socket and session; `this` is the emitter. */
function onTrackedClose(this: Tagged): void {
  this[kDrain]?.[kForget](this)
}

/** One shared 'finish' listener for the HTTP/2 streams in flight during a drain. */
function onStreamFinish(this: Tagged): void {
  this[kDrain]?.[kStreamDone](this as unknown as ServerHttp2Stream)
}

const kStreamDone = Symbol('leak-guard.drain.stream-done')

export class ServerDrain {
  readonly server: AnyServer
  readonly counters: DrainCounters = { finished: 0, rejected: 0, forced: 0 }

  #sockets = new Set<HttpSocket>()
  #raw: Set<Socket> | undefined
  #sessions = new Set<Http2Session>()
  /**
   * HTTP/2 streams in flight, so the drain can count those that finish (`drained`). Node exposes no
   * public list of a session's open streams; tracking them costs a Set entry and one shared listener
   * per stream, on HTTP/2 only (HTTP/1 uses `socket._httpMessage` and costs nothing per request).
   */
  #streams = new Set<ServerHttp2Stream>()
  #serve: boolean
  #graceOver = false
  #tls: boolean
  /** A cleartext `http2.createServer()`: every socket carries an HTTP/2 session. */
  #h2Only: boolean
  #draining = false
  #saved: RequestListener[] | undefined
  #closeSeen = false
  #waitClose = false
  #done: (() => void) | undefined
  #finished: Promise<void>
  #countFinish = true
  #rejected = new WeakSet<object>()
  #ownCloseIdle: PropertyDescriptor | undefined
  #answer: AbortAnswer
  #rejectBody: AnswerBody

  /** `answer`: what a refused request gets (the guard's `retryAfter` and `timeoutBody`). */
  constructor(server: AnyServer, idleConnections: IdleConnections = 'close', answer: AbortAnswer = defaultAnswer) {
    this.server = server
    this.#answer = answer
    this.#rejectBody = answer.body(answer.shutdown())
    this.#serve = idleConnections === 'serve'
    this.#tls = server instanceof TlsServer
    this.#h2Only = !this.#tls && typeof (server as { updateSettings?: unknown }).updateSettings === 'function'
    if (this.#tls) {
      this.#raw = new Set()
      server.on('connection', this.#onRaw)
      server.on('secureConnection', this.#onSocket)
    } else {
      server.on('connection', this.#onSocket)
    }
    server.on('session', this.#onSession)
    server.on('stream', this.#onStream)
    server.on('close', this.#onServerClose)
    this.#finished = new Promise((resolve) => {
      this.#done = resolve
    })
  }

  /** Open connections (HTTP/1 sockets and HTTP/2 sessions) known to the drain. */
  get connections(): number {
    return this.#sockets.size + this.#sessions.size
  }

  /** Resolves once every connection is closed (and the server, if it was listening). */
  get finished(): Promise<void> {
    return this.#finished
  }

  /**
   * The grace period ran out: finishing responses no longer count as drained, and (`'serve'`)
   * requests that still arrive are answered 503 + `Connection: close` like in `'close'` mode.
   */
  endGrace(): void {
    this.#countFinish = false
    this.#graceOver = true
    // `'close'`: the sockets still open and idle here are those kept for a request in transit after a
    // response that had promised keep-alive (see #settle); their wait ends with the grace period.
    if (!this.#serve && this.#draining) {
      for (const socket of this.#sockets) {
        if (!socket.destroyed && !hasResponse(socket) && !this.#h2Only && !isH2(socket)) socket.destroy()
      }
    }
  }

  /**
   * Starts the drain. `closeServer: false` leaves `server.close()` to someone else (Fastify's
   * `close()`); the drain then finishes when the connections it tracks are closed.
   */
  begin(closeServer: boolean): void {
    if (this.#draining) return
    this.#draining = true
    const server = this.server
    this.#saved = server.listeners('request') as RequestListener[]
    server.removeAllListeners('request')
    server.on('request', this.#serve ? this.#serveLast : this.#reject)
    if (this.#serve && typeof (server as { closeIdleConnections?: unknown }).closeIdleConnections === 'function') {
      // Since Node 19 `server.close()` also closes idle connections (and Fastify's close() calls it):
      // exactly the server-initiated close of an idle connection that races a request the peer is
      // sending on it. Shadow it on the instance for the rest of the drain; dispose() restores it.
      this.#ownCloseIdle = Object.getOwnPropertyDescriptor(server, 'closeIdleConnections') ?? { value: undefined }
      Object.defineProperty(server, 'closeIdleConnections', { value: noop, configurable: true, writable: true })
    }
    // Wait for the server's 'close' only when we close it ourselves: it also covers connections opened
    // before the drain existed. When someone else closes it (Fastify), the tracked connections suffice.
    this.#waitClose = closeServer && server.listening
    if (this.#waitClose) server.close()
    for (const session of this.#sessions) this.#goaway(session)
    for (const stream of this.#streams) this.#watchStream(stream)
    for (const socket of this.#sockets) this.#settle(socket)
    // Sockets accepted before the drain was created are unknown to us; Node knows the idle ones.
    if (!this.#serve) (server as { closeIdleConnections?: () => void }).closeIdleConnections?.()
    this.#check()
  }

  /** Destroys every remaining connection. */
  force(): void {
    for (const session of this.#sessions) {
      if (!session.destroyed) {
        this.counters.forced++
        session.destroy()
      }
    }
    for (const socket of this.#sockets) {
      if (!socket.destroyed) {
        // An idle kept-alive socket left open by `'serve'` is closed here as planned, not forced.
        if (!this.#serve || hasResponse(socket)) this.counters.forced++
        socket.destroy()
      }
    }
    if (this.#raw !== undefined) {
      for (const socket of this.#raw) {
        if (!socket.destroyed) socket.destroy()
      }
    }
    ;(this.server as { closeAllConnections?: () => void }).closeAllConnections?.()
  }

  /** Removes every listener the drain added and gives the app its request listeners back. */
  dispose(): void {
    const server = this.server
    server.removeListener('connection', this.#onRaw)
    server.removeListener('connection', this.#onSocket)
    server.removeListener('secureConnection', this.#onSocket)
    server.removeListener('session', this.#onSession)
    server.removeListener('stream', this.#onStream)
    server.removeListener('close', this.#onServerClose)
    if (this.#ownCloseIdle !== undefined) {
      if (this.#ownCloseIdle.value === undefined && this.#ownCloseIdle.get === undefined) delete (server as { closeIdleConnections?: unknown }).closeIdleConnections
      else Object.defineProperty(server, 'closeIdleConnections', this.#ownCloseIdle)
      this.#ownCloseIdle = undefined
    }
    for (const socket of this.#sockets) socket.removeListener('close', onTrackedClose)
    if (this.#raw !== undefined) for (const socket of this.#raw) socket.removeListener('close', onTrackedClose)
    for (const session of this.#sessions) session.removeListener('close', onTrackedClose)
    for (const stream of this.#streams) {
      stream.removeListener('close', onTrackedClose)
      stream.removeListener('finish', onStreamFinish)
    }
    if (this.#saved !== undefined) {
      server.removeListener('request', this.#reject)
      for (const listener of this.#saved) server.on('request', listener)
      this.#saved = undefined
    }
    this.#sockets.clear()
    this.#raw?.clear()
    this.#sessions.clear()
    this.#streams.clear()
  }

  #onRaw = (socket: Socket): void => {
    this.#raw!.add(socket)
    // One closure per connection (not per request): deleting just this socket keeps a close O(1);
    // scanning every tracked socket on each close would grow quadratically with connections.
    ;(socket as unknown as Tagged)[kDrain] = this
    socket.once('close', onTrackedClose)
  }

  #onSocket = (socket: HttpSocket): void => {
    this.#sockets.add(socket)
    ;(socket as unknown as Tagged)[kDrain] = this
    socket.once('close', onTrackedClose)
    // A connection that completes its handshake during the drain: nothing to serve on it.
    if (this.#draining) this.#settle(socket)
  }

  /** @internal A tracked socket or session closed: forget just that one (O(1) per close). */
  [kForget](closed: object): void {
    if (this.#raw?.delete(closed as Socket) === true) return
    if (this.#streams.delete(closed as ServerHttp2Stream)) return
    this.#sockets.delete(closed as HttpSocket)
    this.#sessions.delete(closed as Http2Session)
    this.#check()
  }

  #onSession = (session: Http2Session): void => {
    this.#sessions.add(session)
    ;(session as unknown as Tagged)[kDrain] = this
    session.once('close', onTrackedClose)
    if (this.#draining) this.#goaway(session)
  }

  #onStream = (stream: ServerHttp2Stream): void => {
    this.#streams.add(stream)
    ;(stream as unknown as Tagged)[kDrain] = this
    stream.once('close', onTrackedClose)
    if (this.#draining) this.#watchStream(stream)
  }

  #watchStream(stream: ServerHttp2Stream): void {
    if (stream.writableFinished || stream.destroyed) return
    stream.once('finish', onStreamFinish)
  }

  /** @internal An HTTP/2 stream in flight during the drain sent its whole response. */
  [kStreamDone](stream: ServerHttp2Stream): void {
    if (this.#countFinish && !this.#rejected.has(stream)) this.counters.finished++
  }


  #onServerClose = (): void => {
    this.#closeSeen = true
    this.#check()
  }

  #goaway(session: Http2Session): void {
    if (!session.closed && !session.destroyed) session.close()
  }

  /** An HTTP/1 socket at drain time: close it if idle, else close it after its response. */
  #settle(socket: HttpSocket): void {
    if (socket.destroyed || this.#h2Only || isH2(socket)) return
    const res = socket._httpMessage
    if (res === undefined || res === null) {
      // `'serve'`: an idle socket stays open; the request that may arrive on it gets `#serveLast`.
      if (!this.#serve) socket.destroy()
      return
    }
    // Headers already out without `Connection: close`: the peer was promised keep-alive and its agent
    // may send the next request the moment this response ends. Closing the socket then resets that
    // request (ECONNRESET, never retried for a POST): keep it open instead, so the request is answered
    // with `Connection: close` (`'serve'`: by the app; `'close'`: 503 + `Retry-After`). Node's
    // `_last` is the flag its own 'finish' handler closes the socket by.
    const promised = res.headersSent && (res as { _last?: boolean })._last === false
    if (!res.headersSent) res.setHeader('Connection', 'close')
    res.once('finish', () => {
      if (this.#countFinish && !this.#rejected.has(res)) this.counters.finished++
      // Node's own 'finish' listener ran first: it assigned the next pipelined response, if any, or
      // already ended the socket because of `Connection: close`.
      if (socket.destroyed) return
      if (socket._httpMessage !== undefined && socket._httpMessage !== null) this.#settle(socket)
      // Open until a request comes (answered with `Connection: close`), the peer closes, Node's
      // `keepAliveTimeout`, the end of the grace period (`'close'`, see endGrace) or force().
      else if (promised && !this.#graceOver) return
      else if (socket.writable) socket.destroySoon()
    })
  }

  /**
   * `'serve'`: a request that arrives on an open connection during the drain runs through the app as
   * usual, answered with `Connection: close` so the peer does not reuse the connection (Node closes
   * the socket once the response is out). The guard aborts it at the grace period like any other.
   */
  #serveLast = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.#graceOver) {
      this.#reject(req, res)
      return
    }
    if (req.httpVersionMajor < 2) {
      res.setHeader('Connection', 'close')
      res.once('finish', () => {
        if (this.#countFinish) this.counters.finished++
      })
    }
    const saved = this.#saved
    if (saved !== undefined) for (const listener of saved) listener.call(this.server, req, res)
  }

  #reject = (req: IncomingMessage, res: ServerResponse): void => {
    this.counters.rejected++
    this.#rejected.add(res)
    const stream = (res as unknown as { stream?: object }).stream
    if (stream !== undefined) this.#rejected.add(stream)
    sendAnswer(res, 503, this.#answer.headers, this.#rejectBody, req.httpVersionMajor < 2)
  }

  #check(): void {
    if (!this.#draining || this.#done === undefined) return
    if (this.#waitClose ? !this.#closeSeen : this.#sockets.size + this.#sessions.size > 0) return
    const done = this.#done
    this.#done = undefined
    done()
  }
}

function noop(): void {}

function hasResponse(socket: HttpSocket): boolean {
  return socket._httpMessage !== undefined && socket._httpMessage !== null
}

function isH2(socket: HttpSocket): boolean {
  return socket.alpnProtocol === 'h2'
}
