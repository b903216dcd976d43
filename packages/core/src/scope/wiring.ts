/**
 * Warnings about how leak-guard is wired into an app, found at run time by the adapters. Each is
 * emitted once per app (keyed by an object the adapter picks: the app's request prototype, the Koa
 * app) through `process.emitWarning`, so `--no-warnings`, `--throw-deprecation`-style tooling and
 * `process.on('warning')` see them like Node's own.
 */
export type WiringWarningCode =
  /** The middleware runs after the routes (or not at all for them): `req.signal`/`ctx.signal` is `undefined` there. */
  | 'LG_WARN_MOUNTED_AFTER_ROUTES'
  /** Two `leakGuard()` with different options see the same request: only the first one's options apply. */
  | 'LG_WARN_TWO_GUARDS'

const warned = new WeakMap<object, Set<WiringWarningCode>>()

export function warnWiring(app: object, code: WiringWarningCode, message: string): void {
  let codes = warned.get(app)
  if (codes === undefined) warned.set(app, (codes = new Set()))
  if (codes.has(code)) return
  codes.add(code)
  process.emitWarning(message, { type: 'LeakGuardWarning', code })
}

/**
 * A second `leakGuard()` met a request the `first` one already scoped: warn (once per `app`) when their
 * options differ, since only the first one's apply. The same settings in an app and its sub-app are fine.
 */
export function checkSecondGuard(app: object, first: { readonly options: object } | undefined, second: { readonly options: object }): void {
  if (first === undefined || first === second || sameOptions(first.options, second.options)) return
  warnWiring(app, 'LG_WARN_TWO_GUARDS', 'Two leakGuard() with different options handle the same request: only the first one (and its options) applies. Mount one leakGuard() per app.')
}

function sameOptions(a: object, b: object): boolean {
  const x = a as Record<string, unknown>
  const y = b as Record<string, unknown>
  for (const key of Object.keys(x)) {
    if (key === 'logger' || key === 'timeoutBody') {
      if (x[key] !== y[key] && JSON.stringify(x[key]) !== JSON.stringify(y[key])) return false
    } else if (x[key] !== y[key]) return false
  }
  return true
}
