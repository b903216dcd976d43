import { once } from 'node:events'
import { Agent, request as httpRequest } from 'node:http'
import { connect, type Socket } from 'node:net'

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  reusedSocket: boolean
  /** Milliseconds from sending the request to the end of the response. */
  elapsed: number
}

export interface SendOptions {
  method?: string
  path: string
  id?: string
  json?: unknown
  agent?: Agent
  /** More request headers (a caller's deadline header). */
  headers?: Record<string, string>
}

type RequestFn = typeof httpRequest

/**
 * One HTTP request over a real socket; resolves with the whole response. `request` and `extra` let a
 * transport send it another way (HTTPS with its TLS options) through the same code.
 */
export function send(port: number, options: SendOptions, request: RequestFn = httpRequest, extra: Record<string, unknown> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = options.json === undefined ? undefined : JSON.stringify(options.json)
    const started = performance.now()
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path,
        agent: options.agent ?? false,
        ...extra,
        headers: {
          ...options.headers,
          ...(options.id === undefined ? {} : { 'x-id': options.id }),
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            reusedSocket: req.reusedSocket,
            elapsed: performance.now() - started,
          }),
        )
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

/** Opens a raw socket and writes `text` (a request, possibly partial). */
export async function rawSocket(port: number, text: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  // The tests destroy these sockets themselves; a reset from the server side is not a failure here.
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(text)
  return socket
}

export function rawRequest(method: string, path: string, id: string, json?: unknown): string {
  const body = json === undefined ? '' : JSON.stringify(json)
  const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', `x-id: ${id}`]
  if (json !== undefined) head.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`)
  return `${head.join('\r\n')}\r\n\r\n${body}`
}

/** Collects what is written to stderr and every unhandled rejection / uncaught exception meanwhile. */
export function captureProcessNoise(): { stop(): string[] } {
  const noise: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    noise.push(`stderr: ${String(chunk)}`)
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest)
  }) as typeof process.stderr.write
  const onRejection = (reason: unknown): void => {
    noise.push(`unhandledRejection: ${String(reason)}`)
  }
  const onException = (error: unknown): void => {
    noise.push(`uncaughtException: ${String(error)}`)
  }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  return {
    stop() {
      process.stderr.write = write
      process.off('unhandledRejection', onRejection)
      process.off('uncaughtException', onException)
      return noise
    },
  }
}

/**
 * Stands in for an app's own `'uncaughtException'` handler, with mocha's own set aside meanwhile (it
 * would fail the test): collects the message of every exception that reaches it. `restore()` puts
 * mocha's back.
 */
export function catchUncaught(): { readonly messages: string[]; restore(): void } {
  const messages: string[] = []
  const mochas = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  const onError = (error: Error): void => {
    messages.push(error.message)
  }
  process.on('uncaughtException', onError)
  return {
    messages,
    restore() {
      process.removeListener('uncaughtException', onError)
      for (const listener of mochas) process.on('uncaughtException', listener)
    },
  }
}
