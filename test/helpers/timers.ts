import { createHook } from 'node:async_hooks'

/**
 * Counts live `Timeout` resources created by leak-guard's own code (a packages dist folder), unref'd ones included (`process.getActiveResourcesInfo()` leaves
 * those out, and leak-guard unrefs its timers), through an async hook: a timer is live from its init
 * until it is cleared or has fired.
 */
export function trackTimers(): { live(): number; created(): number; stacks(): string[]; stop(): void } {
  const live = new Map<number, string>()
  let created = 0
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
      // The frame right below the timers module's own frames (Node 24 does not always show a
      // `new Timeout` frame among them): a timer Node's http code arms for itself has a node: frame there.
      // `AsyncResource#runInAsyncScope(setTimeout, ...)` calls the timers API on its caller's behalf.
      const isTimers = (line: string): boolean => /node:(?:internal\/)?timers|runInAsyncScope/.test(line)
      let i = lines.findIndex(isTimers)
      while (i !== -1 && i < lines.length && isTimers(lines[i]!)) i++
      const caller = i === -1 ? undefined : lines[i]
      if (caller !== undefined && /packages[\\/][a-z]+[\\/](dist|src)[\\/]/.test(caller)) {
        live.set(asyncId, stack)
        created++
      }
    },
    destroy(asyncId) {
      live.delete(asyncId)
    },
  }).enable()
  return {
    live: () => live.size,
    created: () => created,
    stacks: () => [...live.values()],
    stop: () => hook.disable(),
  }
}
