import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import { performance } from 'node:perf_hooks'
import { InvalidOptionError } from '../errors.js'
import { boolean, checkKeys, invalid, MAX_TIMER, milliseconds, millisecondsOrFalse } from '../options.js'
import type { ShutdownGuard as Guard, ShutdownSummary } from '../types.js'
import { isGuard } from '../brand.js'
import { ServerDrain, type IdleConnections } from './drain.js'
import { isServer, type AnyServer } from './harden.js'
import { createReadinessHandler } from './readiness.js'
import { kCloseServer, kExternalClose } from '../symbols.js'

export type { ShutdownSummary }

export interface ShutdownOptions {
  /**
   * The app's guard (or guards, one per app sharing the server): marked as closing at once (readiness,
   * detached work), its requests aborted with `ShutdownError` at `gracePeriod`, its registered
   * dispatchers, pools and clients closed at the end, and `guard.shutdown()` runs this shutdown.
   * @default undefined
   */
  guard?: Guard | readonly Guard[]
  /**
   * Time between the start of the shutdown and the moment the server stops accepting, in milliseconds.
   * Readiness answers 503 during it while requests are still served, so a load balancer that polls
   * readiness stops routing here first. `false` for none.
   * @default false
   */
  readinessDelay?: number | false
  /**
   * Time from the start of the shutdown after which requests still running are aborted with
   * `ShutdownError` (503 if nothing was sent yet), in milliseconds.
   * @default 10000
   */
  gracePeriod?: number
  /**
   * Time from the start of the shutdown after which every connection still open is destroyed, in
   * milliseconds. Must be greater than `gracePeriod`; keep it below Kubernetes'
   * `terminationGracePeriodSeconds` minus the `preStop` sleep.
   * @default gracePeriod + 5000
   */
  forceAfter?: number
  /**
   * What the drain does with idle kept-alive HTTP/1 connections.
   * - `'close'`: close them at once, and answer a request that still arrives on one 503 +
   *   `Connection: close` without running the app (Fastify's `return503OnClosing`). Right for clients
   *   that connect directly, and behind a proxy that retries a 503 or a reset.
   * - `'serve'`: for apps behind a reverse proxy with upstream keep-alive (nginx `keepalive`, Envoy,
   *   HAProxy). Idle connections stay open; a request that arrives on one runs through the app and is
   *   answered with `Connection: close` (aborted at `gracePeriod` like any in-flight request; after
   *   `gracePeriod` it gets the 503), then the connection closes. Connections never used again close
   *   when the proxy closes them or at `forceAfter` (not counted as `forced`). A proxy does not resend
   *   a non-idempotent request (POST) it already wrote, so closing an idle connection under a request
   *   in transit, or answering it 503, fails that request; serving it cannot. On Fastify also set
   *   `return503OnClosing: false`, or Fastify answers these requests 503 itself.
   * HTTP/2 sessions get GOAWAY either way.
   * @default 'close'
   */
  idleConnections?: IdleConnections
  /**
   * Install `SIGTERM`/`SIGINT` handlers that start the shutdown; a second signal forces it. Removed
   * when the shutdown finishes or on `dispose()`.
   * @default false
   */
  handleSignals?: boolean
  /**
   * After a shutdown started by a signal finishes, call `process.exit()` (code 0, or 1 when connections
   * had to be forced). Off by default: a process whose shutdown left nothing behind exits by itself.
   * @default false
   */
  exit?: boolean
}

export interface ResolvedShutdownOptions {
  guards: readonly Guard[]
  readinessDelay: number | false
  gracePeriod: number
  forceAfter: number
  idleConnections: IdleConnections
  handleSignals: boolean
  exit: boolean
}


const shutdownKeys = ['guard', 'readinessDelay', 'gracePeriod', 'forceAfter', 'idleConnections', 'handleSignals', 'exit'] as const


export function resolveShutdownOptions(options?: ShutdownOptions): ResolvedShutdownOptions {
  const o = checkKeys('createShutdown()', options, shutdownKeys)
  let guards: Guard[] = []
  if (o.guard !== undefined) {
    guards = Array.isArray(o.guard) ? [...(o.guard as unknown[])] as Guard[] : [o.guard as Guard]
    for (const g of guards) if (!isGuard(g)) throw invalid('guard', 'a Guard (`middleware.guard`, `fastify.leakGuard`) or an array of them', o.guard)
  }
  const gracePeriod = milliseconds('gracePeriod', o.gracePeriod, 10_000)
  const forceAfter = milliseconds('forceAfter', o.forceAfter, Math.min(gracePeriod + 5_000, MAX_TIMER))
  const readinessDelay = millisecondsOrFalse('readinessDelay', o.readinessDelay, false)
  if (forceAfter <= gracePeriod) {
    throw new InvalidOptionError('forceAfter', `Expected \`forceAfter\` (${forceAfter}) to be greater than \`gracePeriod\` (${gracePeriod})`)
  }
  if (readinessDelay !== false && readinessDelay >= gracePeriod) {
    throw new InvalidOptionError('readinessDelay', `Expected \`readinessDelay\` (${readinessDelay}) to be less than \`gracePeriod\` (${gracePeriod})`)
  }
  const idleConnections = o.idleConnections ?? 'close'
  if (idleConnections !== 'close' && idleConnections !== 'serve') throw invalid('idleConnections', "`'close'` or `'serve'`", idleConnections)
  return {
    guards: Object.freeze(guards),
    readinessDelay,
    gracePeriod,
    forceAfter,
    idleConnections,
    handleSignals: boolean('handleSignals', o.handleSignals, false),
    exit: boolean('exit', o.exit, false),
  }
}


const signals = ['SIGTERM', 'SIGINT'] as const

function sleep(ms: number, handle: (timer: NodeJS.Timeout) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    timer.unref()
    handle(timer)
  })
}

/**
 * Graceful shutdown of one or more servers, in Go's `srv.Shutdown(ctx)` spirit:
 * 1. readiness answers 503 at once; after `readinessDelay` the server stops accepting;
 * 2. requests arriving on open connections get 503 + `Connection: close`, in-flight responses go out
 *    with `Connection: close`, idle keep-alive sockets close now and as they become idle
 *    (`idleConnections: 'serve'`: idle ones stay open and serve one last request each);
 * 3. at `gracePeriod` the guard aborts what still runs with `ShutdownError`; at `forceAfter` every
 *    connection is destroyed;
 * 4. resources registered with the guard close, and `close()` resolves with a summary.
 *
 * Create it at startup, right after `listen()`: it tracks connections from then on. Every timer it
 * starts is unref'd and every listener it adds is removed when it finishes.
 */
export class GracefulShutdown {
  readonly options: Readonly<ResolvedShutdownOptions>
  /**
   * Readiness probe handler for `node:http` and Express: 200 while serving, 503 + `Connection: close`
   * from the first moment of the shutdown.
   */
  readonly readiness: (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void

  #drains: ServerDrain[]
  #closing = false
  #promise: Promise<ShutdownSummary> | undefined
  #timers = new Set<NodeJS.Timeout>()
  #forced = false
  #forceNow: (() => void) | undefined
  #signalHandler: ((signal: NodeJS.Signals) => void) | undefined
  #detachGuards: Array<() => void> = []
  #closeServer: (() => void) | undefined
  #disposed = false

  constructor(servers: AnyServer | readonly AnyServer[], options?: ShutdownOptions) {
    const list = Array.isArray(servers) ? [...(servers as AnyServer[])] : [servers as AnyServer]
    if (list.length === 0 && servers !== noServers) throw invalid('servers', 'a server or a non-empty array of servers', servers)
    for (const server of list) if (!isServer(server)) throw invalid('server', 'an http, https or http2 server', server)
    this.options = Object.freeze(resolveShutdownOptions(options))
    // Requests refused during the drain get the first guard's answer (its `retryAfter`, `timeoutBody`).
    const answer = this.options.guards[0]?.answer
    this.#drains = list.map((server) => new ServerDrain(server, this.options.idleConnections, answer))
    this.readiness = createReadinessHandler(this)
    for (const guard of this.options.guards) {
      this.#detachGuards.push(guard.attachShutdown(() => this.close()))
    }
    if (this.options.handleSignals) {
      const handler = (): void => {
        if (this.#closing) {
          this.force()
          return
        }
        const done = this.close()
        if (this.options.exit) {
          void done.then((summary) => process.exit(summary.forced > 0 ? 1 : 0))
        }
      }
      this.#signalHandler = handler
      for (const signal of signals) process.on(signal, handler)
    }
  }

  /** True from the first moment of the shutdown. */
  get closing(): boolean {
    return this.#closing
  }

  /** False from the first moment of the shutdown. */
  get ready(): boolean {
    return !this.#closing
  }

  /** Starts the shutdown (once; later calls return the same promise) and resolves with its summary. */
  close(): Promise<ShutdownSummary> {
    this.#promise ??= this.#run(false)
    return this.#promise
  }

  /** Destroys every connection now: the second signal, or an impatient operator. */
  force(): void {
    this.#forced = true
    for (const drain of this.#drains) drain.force()
    this.#forceNow?.()
  }

  /** Removes signal handlers and connection tracking without shutting down. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    if (this.#signalHandler !== undefined) {
      for (const signal of signals) process.removeListener(signal, this.#signalHandler)
      this.#signalHandler = undefined
    }
    for (const drain of this.#drains) drain.dispose()
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    for (const detach of this.#detachGuards) detach()
    this.#detachGuards = []
  }

  /** @internal Fastify's `preClose`: the framework closes the server itself and has stopped routing. */
  [kExternalClose](): Promise<ShutdownSummary> {
    this.#promise ??= this.#run(true)
    return this.#promise
  }

  /** @internal Replaces `server.close()` as the way to stop accepting (Fastify: `fastify.close()`). */
  [kCloseServer](fn: () => void): void {
    this.#closeServer = fn
  }

  #timer(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      fn()
    }, ms)
    timer.unref()
    this.#timers.add(timer)
  }

  async #run(external: boolean): Promise<ShutdownSummary> {
    const start = performance.now()
    const { guards, readinessDelay, gracePeriod, forceAfter } = this.options
    this.#closing = true
    for (const guard of guards) guard.beginShutdown()
    const since = (): number => performance.now() - start
    let aborted = 0

    const graceOver = (): void => {
      for (const drain of this.#drains) drain.endGrace()
      for (const guard of guards) aborted += guard.abortAll()
    }
    // No server to drain (`guard.shutdown()` without `createShutdown()`): nothing can finish on its
    // own connection, so what still runs is aborted at once.
    if (this.#drains.length === 0) graceOver()
    else this.#timer(gracePeriod, graceOver)
    const forced = new Promise<void>((resolve) => {
      this.#forceNow = resolve
      this.#timer(forceAfter, () => this.force())
    })

    if (!external && readinessDelay !== false && !this.#forced) {
      await Promise.race([sleep(readinessDelay, (t) => this.#timers.add(t)), forced])
    }

    const custom = this.#closeServer
    for (const drain of this.#drains) drain.begin(!external && custom === undefined)
    if (!external && custom !== undefined) custom()
    // After force() the 'close' events follow within a tick or two: wait for them (bounded), so the
    // summary and the removal of listeners see the final state.
    const finished = Promise.all(this.#drains.map((d) => d.finished))
    await Promise.race([finished, forced.then(() => Promise.race([finished, sleep(1_000, (t) => this.#timers.add(t))]))])

    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()

    let resources = 0
    const closing: Array<Promise<unknown>> = []
    for (const guard of guards) {
      for (const resource of guard.resources()) {
        resources++
        closing.push(Promise.resolve().then(() => resource.close()))
      }
    }
    if (closing.length > 0) {
      // A resource that never closes must not hang the shutdown: wait until `forceAfter`, at least 1 s.
      const budget = Math.max(forceAfter - since(), 1_000)
      await Promise.race([Promise.allSettled(closing), sleep(budget, (t) => this.#timers.add(t))])
    }
    for (const guard of guards) guard.dispose()

    const summary: ShutdownSummary = {
      drained: this.#drains.reduce((n, d) => n + d.counters.finished, 0),
      aborted,
      forced: this.#drains.reduce((n, d) => n + d.counters.forced, 0),
      rejected: this.#drains.reduce((n, d) => n + d.counters.rejected, 0),
      resources,
      durationMs: Math.round(since()),
    }
    this.dispose()
    return summary
  }
}

/**
 * The shutdown hook for an adapter whose framework closes the server itself (Fastify's `close()`).
 * `stopAccepting` replaces `server.close()`: `shutdown.close()` (a signal, `guard.shutdown()`) calls it
 * after `readinessDelay`, and the framework's close then calls back. The returned function is what the
 * framework calls when it begins closing (it stopped routing and closes the server itself): it starts
 * the drain without closing the server, or joins the one already running, and resolves with the
 * summary once the drain finished. Call it from the framework's pre-close and close hooks.
 *
 * @example
 * const closing = frameworkCloses(shutdown, () => void fastify.close())
 * fastify.addHook('preClose', (next) => { void closing(); next() })
 * fastify.addHook('onClose', async () => { await closing() })
 */
export function frameworkCloses(shutdown: GracefulShutdown, stopAccepting: () => void): () => Promise<ShutdownSummary> {
  shutdown[kCloseServer](stopAccepting)
  return () => shutdown[kExternalClose]()
}

/** The server list of a shutdown that drains none (see `shutdownGuard`). */
const noServers: readonly AnyServer[] = []

/**
 * `guard.shutdown()` when no `createShutdown()` is attached: the same sequence (closing, abort, close
 * the registered resources within `forceAfter`, dispose, summary) with no connections to drain.
 */
export function shutdownGuard(guard: Guard): Promise<ShutdownSummary> {
  return new GracefulShutdown(noServers, { guard }).close()
}

/**
 * Creates the graceful shutdown of `server` (or several). Throws `LG_ERR_INVALID_OPTION` for invalid
 * options, e.g. `forceAfter` not above `gracePeriod`.
 *
 * @example
 * const server = app.listen(3000)
 * hardenServer(server)
 * const shutdown = createShutdown(server, { guard: middleware.guard, readinessDelay: 5_000, handleSignals: true })
 * app.get('/readyz', shutdown.readiness)
 */
export function createShutdown(server: AnyServer | readonly AnyServer[], options?: ShutdownOptions): GracefulShutdown {
  return new GracefulShutdown(server, options)
}
