import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A throwaway redis-server: free port on 127.0.0.1, temporary directory, no persistence. */
export class RedisServer {
  readonly port: number
  readonly dir: string
  #child: ChildProcess | undefined

  private constructor(port: number, dir: string) {
    this.port = port
    this.dir = dir
  }

  /** Starts one, or resolves `undefined` when `redis-server` is not installed. */
  static async start(): Promise<RedisServer | undefined> {
    if (!redisAvailable()) return undefined
    const server = new RedisServer(await freePort(), mkdtempSync(join(tmpdir(), 'lg-redis-')))
    await server.#spawn()
    return server
  }

  async #spawn(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--loglevel', 'warning'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    this.#child = child
    child.stderr!.resume()
    // Ready once it accepts a connection and answers PING.
    const deadline = performance.now() + 10_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
      if (await ping(this.port)) return
      if (performance.now() > deadline) throw new Error('redis-server did not start within 10 s')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null
  }

  /** Stops the server (SIGKILL: nothing to persist), keeping the directory for a restart. */
  async kill(): Promise<void> {
    const child = this.#child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  /** Starts it again on the same port after `kill()`. */
  async restart(): Promise<void> {
    await this.kill()
    await this.#spawn()
  }

  /** Stops it and removes its directory. Safe to call twice. */
  async stop(): Promise<void> {
    await this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

function redisAvailable(): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}

/**
 * Starts a throwaway Redis for a mocha suite, or skips the suite with a line saying why when
 * `redis-server` is missing. Call from `before()` with its `this`.
 */
export async function redisOrSkip(ctx: Mocha.Context): Promise<RedisServer> {
  const server = await RedisServer.start()
  if (server === undefined) {
    console.log('    SKIPPED: redis-server is not installed (Debian: apt-get install redis-server)')
    ctx.skip()
  }
  return server!
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk: string) => {
      data += chunk
      if (data.includes('\r\n')) {
        socket.destroy()
        resolve(data.startsWith('+PONG'))
      }
    })
    socket.on('error', () => resolve(false))
  })
}
