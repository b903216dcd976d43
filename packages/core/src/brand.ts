import { kGuardBrand } from './symbols.js'
import type { ShutdownGuard } from './types.js'

/**
 * Is `value` a guard (from this copy of core or another: the brand is a `Symbol.for` key, like the
 * errors')? One check for every place that accepts a guard (shutdown, pools, clients, debug, metrics).
 */
export function isGuard(value: unknown): value is ShutdownGuard {
  return value !== null && typeof value === 'object' && (value as { [kGuardBrand]?: unknown })[kGuardBrand] === true
}
