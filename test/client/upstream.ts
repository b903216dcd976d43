import { once } from 'node:events'
import * as http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void

/**
 * A real HTTP server on 127.0.0.1 that records what a client does to it: sockets open now and at most,
 * requests seen, and when each request's connection went away.
 */
export class Upstream {
  readonly server: http.Server
  url = ''
  handler: UpstreamHandler = (_req, res) => res.end('ok')
  sockets = new Set<Socket>()
  maxSockets = 0
  totalSockets = 0
  requests = 0
  /** `performance.now()` when each request's response closed before it finished (the client aborted). */
  aborts: number[] = []
  #arrivals: Array<() => void> = []

  constructor() {
    this.server = http.createServer((req, res) => {
      this.requests++
      res.on('close', () => {
        if (!res.writableFinished) this.aborts.push(performance.now())
      })
      const waiters = this.#arrivals
      this.#arrivals = []
      for (const fn of waiters) fn()
      this.handler(req, res)
    })
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      this.totalSockets++
      if (this.sockets.size > this.maxSockets) this.maxSockets = this.sockets.size
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  async listen(): Promise<this> {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  /** Resolves when the next request arrives. */
  nextRequest(): Promise<void> {
    return new Promise((resolve) => this.#arrivals.push(resolve))
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    this.server.close()
    await once(this.server, 'close')
  }
}

export async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` until it returns true or `ms` passed. */
export async function waitFor(check: () => boolean, ms = 2_000): Promise<void> {
  const end = performance.now() + ms
  while (!check()) {
    if (performance.now() > end) throw new Error('condition not met in time')
    await delay(5)
  }
}
