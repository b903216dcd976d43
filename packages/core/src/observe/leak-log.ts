import type { LeakEvent } from '../types.js'

/** The pino-compatible logger shape leak-guard logs through: `warn(object, message)`. */
export interface LeakLogger {
  warn(obj: object, msg?: string): unknown
}

/** One line describing a leak, e.g. `leak-guard: request outlived GET /users/:id by 12 ms (LG_ERR_TIMEOUT)`. */
export function formatLeak(event: LeakEvent): string {
  return `leak-guard: ${event.kind} outlived ${event.method} ${event.route ?? event.url} by ${event.lateBy} ms (${event.reason})`
}

/** Logs `event` through `logger` at warn level: the event as the object, `formatLeak()` as the message. */
export function logLeak(logger: LeakLogger, event: LeakEvent): void {
  logger.warn({ leak: event }, formatLeak(event))
}
