/**
 * Stacks for late-work reports. A diagnostics_channel subscriber runs inside undici or node:http, so
 * the handler's frame sits below 20–40 internal frames: the default `Error.stackTraceLimit` (10)
 * would cut it off. The limit is raised for the one capture and the internal frames are dropped.
 *
 * V8 records the frames at capture time but formats them into text only when `.stack` is first read,
 * and formatting is most of the cost (≈ 100 µs for 64 frames), so the text is built only when a leak
 * is reported or a dump lists the work.
 */

const DEEP = 64

// Frames that only say "inside undici / node:http / the channel": never the user's code.
const internal = /\((?:node:|internal\/)|^\s+at (?:node:|new Promise \(<anonymous>\))|[\\/]node_modules[\\/](?:\.pnpm[\\/][^\\/]+[\\/]node_modules[\\/])?undici[\\/]/

/** A captured stack whose text is built on first read. */
export interface LazyStack {
  readonly stack: string | undefined
}

class CapturedStack implements LazyStack {
  #raw: { stack?: string } | undefined
  #text: string | undefined

  constructor(raw: { stack?: string }) {
    this.#raw = raw
  }

  get stack(): string | undefined {
    const raw = this.#raw
    if (raw !== undefined) {
      this.#raw = undefined
      const lines = raw.stack?.split('\n').slice(1).filter((line) => !internal.test(line))
      this.#text = lines === undefined || lines.length === 0 ? undefined : lines.join('\n')
    }
    return this.#text
  }
}

/**
 * Captures the stack of the caller of `below` (whose own frame and everything above it are omitted);
 * its text, read later, has no Node-internal or undici frames. `depth` frames are recorded: deep for
 * diagnostics_channel subscribers, the default limit where the caller is the user's code already
 * (`scope.spawn()`, `dispatcher.run()`).
 */
export function captureUserStack(below: (...args: never[]) => unknown, depth = DEEP): LazyStack {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = depth
  const raw: { stack?: string } = {}
  Error.captureStackTrace(raw, below)
  Error.stackTraceLimit = limit
  return new CapturedStack(raw)
}

/**
 * True when the synchronous stack below `below` holds a frame of user code. undici creates the
 * requests it had queued in a connection-limited pool later, from its own callbacks, where the
 * AsyncLocalStorage context is that of whoever owns the socket, not of the caller: such a stack holds
 * only undici and Node frames, and the scope read there must not be blamed.
 */
export function calledFromUserCode(below: (...args: never[]) => unknown): boolean {
  return captureUserStack(below).stack !== undefined
}
