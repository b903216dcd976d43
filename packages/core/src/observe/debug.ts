import type { IncomingMessage, ServerResponse } from 'node:http'
import { checkKeys, invalid } from '../options.js'
import { currentScope } from '../scope/context.js'
import type { Guard } from '../scope/guard.js'
import { isGuard } from '../brand.js'
import { formatSnapshot } from './snapshot.js'

export type DebugHandler = (req: IncomingMessage, res: ServerResponse) => void

function wantsJson(req: IncomingMessage): boolean {
  const url = req.url ?? ''
  const query = url.indexOf('?')
  if (query !== -1 && /(?:^|&)format=json(?:&|$)/.test(url.slice(query + 1))) return true
  const accept = req.headers.accept
  return typeof accept === 'string' && accept.includes('application/json') && !accept.includes('text/plain')
}

/**
 * A plain `(req, res)` handler for an admin route that answers the live dump of `guard`: a text dump
 * grouped by route and state (the default), or JSON with `?format=json` or `Accept: application/json`.
 * The debug request itself is left out. Protect the route: the dump shows URLs and stacks.
 *
 * @example
 * // Express
 * app.get('/debug/requests', adminOnly, createDebugHandler(mw.guard))
 * // Fastify
 * app.get('/debug/requests', (request, reply) => { reply.hijack(); handler(request.raw, reply.raw) })
 * // Koa
 * router.get('/debug/requests', (ctx) => { ctx.respond = false; handler(ctx.req, ctx.res) })
 */
export function createDebugHandler(guard: Guard): DebugHandler {
  if (!isGuard(guard)) {
    throw invalid('guard', 'a leak-guard Guard', guard)
  }
  return function leakGuardDebugHandler(req: IncomingMessage, res: ServerResponse): void {
    const snapshot = guard.snapshot(currentScope())
    const json = wantsJson(req)
    const body = json ? JSON.stringify(snapshot, null, 2) : formatSnapshot(snapshot)
    res.statusCode = 200
    res.setHeader('Content-Type', json ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8')
    res.setHeader('Cache-Control', 'no-store')
    res.end(body)
  }
}

export interface DumpOnSignalOptions {
  /**
   * The signal that triggers a dump. SIGUSR1 is taken by Node's inspector.
   * @default 'SIGUSR2'
   */
  signal?: NodeJS.Signals
  /**
   * Where the text dump goes.
   * @default text => process.stderr.write(text)
   */
  write?: (text: string) => void
}

/**
 * Opt-in: writes the text dump of `guard` to stderr whenever the process receives `SIGUSR2`
 * (`kill -USR2 <pid>`), like a JVM thread dump on SIGQUIT. Installing the listener replaces the
 * signal's default action (terminate). Returns the function that removes it.
 */
export function dumpOnSignal(guard: Guard, options?: DumpOnSignalOptions): () => void {
  const o = checkKeys('dumpOnSignal()', options, ['signal', 'write'])
  const signal = o.signal === undefined ? 'SIGUSR2' : o.signal
  if (typeof signal !== 'string' || !/^SIG[A-Z0-9]+$/.test(signal) || signal === 'SIGKILL' || signal === 'SIGSTOP') {
    throw invalid('signal', 'a signal name such as `"SIGUSR2"`', signal)
  }
  if (o.write !== undefined && typeof o.write !== 'function') throw invalid('write', 'a function', o.write)
  const write = (o.write as ((text: string) => void) | undefined) ?? ((text: string) => void process.stderr.write(text))
  const listener = (): void => {
    write(formatSnapshot(guard.snapshot()))
  }
  process.on(signal, listener)
  return () => {
    process.removeListener(signal, listener)
  }
}
