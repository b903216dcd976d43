import { invalid, millisecondsOrFalse } from '../options.js'

/**
 * Checks a per-route timeout once, where the route is declared (`withTimeout(ms)`, Fastify route
 * config), so a bad value fails at start-up with `LG_ERR_INVALID_OPTION`, never per request.
 */
export function validateRouteTimeout(value: unknown, option = 'timeout'): number | false {
  if (value === undefined) throw invalid(option, 'a positive integer or `false`', value)
  return millisecondsOrFalse(option, value, false)
}
