import { createHook } from 'node:async_hooks'

/**
 * Counts live `Timeout` resources created by leak-guard's own code (a packages dist folder), unref'd ones included (`process.getActiveResourcesInfo()` leaves
 * those out, and leak-guard unrefs its timers), through an async hook: a timer is live from its init
 * until it is cleared or has fired.
 */
export function trackTimers(): { live(): number; stacks(): string[]; stop(): void } {
  const live = new Map<number, string>()
  const hook = createHook({
    init(asyncId, type) {
      if (type !== 'Timeout') return
      const limit = Error.stackTraceLimit
      Error.stackTraceLimit = 40
      const stack = new Error('timer created').stack ?? ''
      Error.stackTraceLimit = limit
      // The code that asked for the timer: the frame that called the public timers API. Timers Node
      // creates for itself (the Date header cache, socket timeouts) are called from Node's internals.
      const lines = stack.split('\n')
      // The first frame outside Node's internals and this helper (Node 24 does not always show a
      // `new Timeout` frame between them).
      const caller = lines.slice(1).find((line) => !line.includes('(node:') && !/^\s+at node:/.test(line) && !line.includes('helpers/timers.ts'))
      if (caller !== undefined && /packages[\\/][a-z]+[\\/](dist|src)[\\/]/.test(caller)) live.set(asyncId, stack)
    },
    destroy(asyncId) {
      live.delete(asyncId)
    },
  }).enable()
  return {
    live: () => live.size,
    stacks: () => [...live.values()],
    stop: () => hook.disable(),
  }
}
