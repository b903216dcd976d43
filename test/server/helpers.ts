import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
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

/** True when `name` is on the PATH (or in /usr/sbin, where Debian puts nginx). */
export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name} || test -x /usr/sbin/${name}`]).status === 0
}

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Resolves once `port` on 127.0.0.1 accepts connections; rejects after `ms`. */
export async function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = performance.now() + ms
  while (performance.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`port ${port} not open within ${ms} ms`)
}

/**
 * A throwaway nginx for one test: a temporary prefix with the temp folders nginx wants, `conf(prefix)`
 * as its configuration, started by `start()`, stopped (QUIT, then KILL after 3 s) and removed by `stop()`.
 */
export class ThrowawayNginx {
  readonly prefix = mkdtempSync(join(tmpdir(), 'lg-nginx-'))
  #process: ChildProcess | undefined

  constructor(conf: (prefix: string) => string) {
    for (const dir of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(this.prefix, dir))
    writeFileSync(join(this.prefix, 'nginx.conf'), conf(this.prefix))
  }

  start(): void {
    this.#process = spawn('nginx', ['-p', this.prefix, '-c', join(this.prefix, 'nginx.conf')], { stdio: 'ignore' })
  }

  async stop(): Promise<void> {
    const nginx = this.#process
    if (nginx !== undefined) {
      const exited = new Promise((resolve) => nginx.once('exit', resolve))
      if (nginx.exitCode === null) nginx.kill('SIGQUIT')
      await Promise.race([exited, sleep(3_000)])
      if (nginx.exitCode === null) nginx.kill('SIGKILL')
    }
    rmSync(this.prefix, { recursive: true, force: true })
  }
}
