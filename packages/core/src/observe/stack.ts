/**
 * Stacks for late-work reports. A diagnostics_channel subscriber runs inside undici or node:http, so
 * the handler's frame sits below 20–40 internal frames: the default `Error.stackTraceLimit` (10)
 * would cut it off. The limit is raised for the one capture and the internal frames are dropped.
 */

const DEEP = 64

// Frames that only say "inside undici / node:http / the channel": never the user's code.
const internal = /\((?:node:|internal\/)|^\s+at (?:node:|new Promise \(<anonymous>\))|[\\/]node_modules[\\/](?:\.pnpm[\\/][^\\/]+[\\/]node_modules[\\/])?undici[\\/]/

/**
 * The stack of the caller of `below` (whose own frame and everything above it are omitted), without
 * Node-internal and undici frames. `undefined` if nothing is left.
 */
export function userStack(below: (...args: never[]) => unknown): string | undefined {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = DEEP
  const holder: { stack?: string } = {}
  Error.captureStackTrace(holder, below)
  Error.stackTraceLimit = limit
  const lines = holder.stack?.split('\n').slice(1).filter((line) => !internal.test(line))
  return lines === undefined || lines.length === 0 ? undefined : lines.join('\n')
}
