import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

export interface ChildEvent {
  event: string
  [key: string]: unknown
}

/** An app fixture running in a child process; events are the JSON lines it prints. */
export class ChildApp {
  readonly child: ChildProcess
  readonly events: ChildEvent[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>
  stderr = ''
  #waiters: Array<() => void> = []

  constructor(script: string, env: Record<string, string>) {
    this.child = spawn(process.execPath, [resolve(fixtures, script)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let buffered = ''
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (line.trim() === '') continue
        this.events.push(JSON.parse(line) as ChildEvent)
        for (const wake of this.#waiters.splice(0)) wake()
      }
    })
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk
    })
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        for (const wake of this.#waiters.splice(0)) wake()
        resolve({ code, signal, at: performance.now() })
      })
    })
  }

  /** Resolves with the first event named `name`, or rejects after `ms`. */
  async waitFor(name: string, ms = 10_000): Promise<ChildEvent> {
    const deadline = performance.now() + ms
    for (;;) {
      const found = this.events.find((e) => e.event === name)
      if (found !== undefined) return found
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`child exited before '${name}': ${this.stderr}`)
      const left = deadline - performance.now()
      if (left <= 0) throw new Error(`no '${name}' event within ${ms} ms; got ${JSON.stringify(this.events)}; stderr: ${this.stderr}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
  }
}

/** A raw keep-alive connection that collects everything the server sends. */
export class RawClient {
  readonly socket: net.Socket
  data = ''
  closedAt: number | undefined
  readonly closed: Promise<number>
  readonly connected: Promise<void>

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.setEncoding('utf8')
    this.socket.on('data', (d: string) => {
      this.data += d
    })
    this.socket.on('error', () => {})
    this.connected = new Promise((resolve) => this.socket.once('connect', () => resolve()))
    this.closed = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.closedAt = performance.now()
        resolve(this.closedAt)
      }),
    )
  }

  get(path: string): void {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
  }

  /** Resolves once `count` complete responses arrived (by counting status lines). */
  async responses(count: number, ms = 5_000): Promise<string[]> {
    const deadline = performance.now() + ms
    while (performance.now() < deadline) {
      const parts = this.data.split(/(?=HTTP\/1\.1 \d{3} )/).filter(Boolean)
      if (parts.length >= count && isComplete(parts[count - 1]!)) return parts
      if (this.closedAt !== undefined) return parts
      await sleep(5)
    }
    return this.data.split(/(?=HTTP\/1\.1 \d{3} )/).filter(Boolean)
  }

  destroy(): void {
    this.socket.destroy()
  }
}

function isComplete(response: string): boolean {
  const end = response.indexOf('\r\n\r\n')
  if (end < 0) return false
  const head = response.slice(0, end).toLowerCase()
  const length = /content-length: (\d+)/.exec(head)
  if (length) return response.length - end - 4 >= Number(length[1])
  if (head.includes('transfer-encoding: chunked')) return response.endsWith('0\r\n\r\n')
  return true
}

export function statusOf(response: string | undefined): number | undefined {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(response ?? '')
  return m ? Number(m[1]) : undefined
}

export function headerOf(response: string | undefined, name: string): string | undefined {
  const head = (response ?? '').split('\r\n\r\n')[0]!
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0 && line.slice(0, i).toLowerCase() === name.toLowerCase()) return line.slice(i + 1).trim()
  }
  return undefined
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
