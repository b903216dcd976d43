import { InvalidOptionError } from './errors.js'

/**
 * Option checks shared by every factory. Each check runs once, when the factory is called, and throws
 * `LG_ERR_INVALID_OPTION` with a message that names the option and the value it got.
 */

function describe(value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value)}\` (string)`
  if (typeof value === 'bigint') return `\`${value}n\` (bigint)`
  if (typeof value === 'function') return '`[Function]` (function)'
  if (value === null) return '`null` (null)'
  if (Array.isArray(value)) return '`[...]` (array)'
  if (typeof value === 'object') return '`{...}` (object)'
  if (typeof value === 'symbol') return `\`${value.toString()}\` (symbol)`
  if (typeof value === 'number' || typeof value === 'boolean') return `\`${String(value)}\` (${typeof value})`
  return '`undefined` (undefined)'
}

export function invalid(option: string, expected: string, value: unknown): InvalidOptionError {
  return new InvalidOptionError(option, `Expected \`${option}\` to be ${expected}, got ${describe(value)}`)
}

/** Rejects keys the factory does not know, so a typo never silently means "default". */
export function checkKeys(scope: string, options: unknown, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalid(scope, 'an options object', options)
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const value = (options as Record<string, unknown>)[key]
      throw new InvalidOptionError(key, `Unknown option \`${key}\` for ${scope} (got ${describe(value)}); expected one of ${known.map((k) => `\`${k}\``).join(', ')}`)
    }
  }
  return options as Record<string, unknown>
}

function isInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value)
}

/** A whole number of milliseconds (or a count) ≥ `min`, or `undefined` for the default. */
export function integer(option: string, value: unknown, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  if (!isInt(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? (min === 1 ? 'a positive integer' : `an integer ≥ ${min}`) : `an integer from ${min} to ${max}`
    throw invalid(option, range, value)
  }
  return value
}

/** Like `integer`, but `false` turns the feature off. `0` never means "off": say `false`. */
export function integerOrFalse(option: string, value: unknown, fallback: number | false, min = 1, max = Number.MAX_SAFE_INTEGER): number | false {
  if (value === false) return false
  if (value === undefined) return fallback
  if (!isInt(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? (min === 1 ? 'a positive integer' : `an integer ≥ ${min}`) : `an integer from ${min} to ${max}`
    throw invalid(option, `${range} or \`false\``, value)
  }
  return value
}

/**
 * The longest delay a Node timer holds: 2^31 − 1 ms (about 24.8 days). A longer one does not wait
 * longer: Node warns (TimeoutOverflowWarning) and fires it after 1 ms, so a 2^31 ms timeout would
 * answer every request 503 at once.
 */
export const MAX_TIMER = 2_147_483_647

/** A duration in milliseconds a timer can hold (`min`..2^31 − 1), or `undefined` for the default. */
export function milliseconds(option: string, value: unknown, fallback: number, min = 1): number {
  return integer(option, value, fallback, min, MAX_TIMER)
}

/** Like `milliseconds`, but `false` turns the feature off. */
export function millisecondsOrFalse(option: string, value: unknown, fallback: number | false, min = 1): number | false {
  return integerOrFalse(option, value, fallback, min, MAX_TIMER)
}

export function boolean(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalid(option, 'a boolean', value)
  return value
}

export function func<T>(option: string, value: unknown): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw invalid(option, 'a function', value)
  return value as T
}

export function httpStatus(option: string, value: unknown, fallback: number): number {
  return integer(option, value, fallback, 400, 599)
}
