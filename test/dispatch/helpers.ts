import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { createGuard, type Guard, type GuardOptions, type RequestScope } from '@leak-guard/core'

export type ScopedHandler = (scope: RequestScope, req: IncomingMessage, res: ServerResponse) => void

/**
 * A bare node:http server whose every request gets a leak-guard scope, the way the adapters do it:
 * `guard.begin(req, res)` and the handler runs inside `guard.enter(scope, …)`.
 */
export async function scopedServer(handler: ScopedHandler, options?: GuardOptions): Promise<{ guard: Guard; server: Server; port: number; close(): Promise<void> }> {
  const guard = createGuard({ timeout: false, ...options })
  const server = createServer((req, res) => {
    const scope = guard.begin(req, res)
    guard.enter(scope, () => handler(scope, req, res))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    guard,
    server,
    port,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      guard.dispose()
    },
  }
}

/** Sends a GET over a raw socket and leaves it open, so the test can destroy it (a client that leaves). */
export async function openRequest(port: number, path: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  return socket
}

export function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first (timer cleared). */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

export async function waitFor(check: () => boolean, timeout = 2000, step = 2): Promise<void> {
  const end = performance.now() + timeout
  while (!check()) {
    if (performance.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, step))
  }
}

/**
 * Active handles/requests by type, taken after a turn of the event loop: mocha arms the test's own
 * timeout timer only after the test function started.
 */
export async function baseline(): Promise<Record<string, number>> {
  await new Promise((resolve) => setImmediate(resolve))
  return activeResources()
}

/** Active handles/requests by type, e.g. `{ Timeout: 2, TCPSocketWrap: 1 }`. */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
  return counts
}

/** Resources present now that were not in `before` (e.g. a timer or a worker left behind). */
export function leftovers(before: Record<string, number>): Record<string, number> {
  const now = activeResources()
  const extra: Record<string, number> = {}
  for (const [type, count] of Object.entries(now)) {
    const diff = count - (before[type] ?? 0)
    if (diff > 0) extra[type] = diff
  }
  return extra
}
