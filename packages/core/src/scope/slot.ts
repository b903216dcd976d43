import type { Guard } from './guard.js'
import type { RequestScope } from './request-scope.js'
import { checkSecondGuard, warnWiring } from './wiring.js'
import { validateRouteTimeout } from '../timeout/route-timeout.js'

/**
 * The adapter kit of the frameworks whose request object (Express `req`, Koa `ctx`) carries the scope:
 * where the scope is stored on it, the `signal`/`scope` getters on its prototype, the wiring warnings
 * and the per-route timeout. Fastify decorates its request itself and does not use it.
 */
export interface ScopeSlotOptions {
  /** Names the symbols (`leak-guard.<name>.scope`, `leak-guard.<name>.installed.v1`) and nothing else. */
  name: string
  /** The `LG_WARN_MOUNTED_AFTER_ROUTES` message: `signal` read where no guard ran, or routes before the middleware. */
  afterRoutes: string
  /** Also define this property on the prototype, valued the guard (Koa's `ctx.leakGuard`). @default none */
  guardProperty?: string
}

export interface ScopeSlot {
  /** The scope a `leakGuard()` gave this request object, or `undefined` where none ran before. */
  get(target: object): RequestScope | undefined
  /**
   * Another guard already scoped this request object (app and sub-app both mount one): warns once per
   * app when its options differ (`LG_WARN_TWO_GUARDS`). The caller then passes on, keeping the first scope.
   */
  held(target: object, guard: Guard): boolean
  /**
   * Installs the `signal`/`scope` getters on the request object's prototype, once per prototype (the
   * framework keeps one per app); `true` when it did just now, so the caller runs its first-request checks.
   */
  install(target: object, guard: Guard): boolean
  /** Stores the request's scope: one own property per request (plus the guard that owns it). */
  set(target: object, scope: RequestScope, guard: Guard): void
  /** Warns (once per app) that the middleware runs after routes that handle requests. */
  warnAfterRoutes(target: object): void
  /** Checks a per-route timeout once, at declaration; the function sets it on a request's scope, if any. */
  routeTimeout(ms: number | false): (target: object) => void
}

/**
 * Creates the slot of one adapter. The getters live on the prototype so a request pays for one own
 * property (the scope) and its AbortSignal is only created if someone reads `signal`.
 */
export function createScopeSlot(options: ScopeSlotOptions): ScopeSlot {
  const { afterRoutes, guardProperty } = options
  const kScope = Symbol(`leak-guard.${options.name}.scope`)
  // Registered: another copy of the same adapter in the process sees the prototype as installed.
  const kInstalled = Symbol.for(`leak-guard.${options.name}.installed.v1`)
  const kGuard = Symbol(`leak-guard.${options.name}.guard`)

  interface Scoped {
    [kScope]?: RequestScope
    [kGuard]?: Guard
    [kInstalled]?: true
  }

  return {
    get(target) {
      return (target as Scoped)[kScope]
    },
    held(target, guard) {
      const scoped = target as Scoped
      if (scoped[kScope] === undefined) return false
      checkSecondGuard(Object.getPrototypeOf(target) as object, scoped[kGuard], guard)
      return true
    },
    install(target, guard) {
      if ((target as Scoped)[kInstalled] === true) return false
      const proto = Object.getPrototypeOf(target) as object
      const properties: PropertyDescriptorMap = {
        [kInstalled]: { value: true, configurable: true },
        signal: {
          configurable: true,
          get(this: Scoped) {
            const scope = this[kScope]
            // Read by a handler the middleware did not run before: it is mounted after the routes.
            if (scope === undefined) warnWiring(proto, 'LG_WARN_MOUNTED_AFTER_ROUTES', afterRoutes)
            return scope?.signal
          },
        },
        scope: {
          configurable: true,
          get(this: Scoped) {
            return this[kScope]
          },
        },
      }
      if (guardProperty !== undefined) properties[guardProperty] = { value: guard, configurable: true }
      Object.defineProperties(proto, properties)
      return true
    },
    set(target, scope, guard) {
      const scoped = target as Scoped
      scoped[kScope] = scope
      scoped[kGuard] = guard
    },
    warnAfterRoutes(target) {
      warnWiring(Object.getPrototypeOf(target) as object, 'LG_WARN_MOUNTED_AFTER_ROUTES', afterRoutes)
    },
    routeTimeout(ms) {
      const timeout = validateRouteTimeout(ms)
      return (target) => {
        ;(target as Scoped)[kScope]?.setTimeout(timeout)
      }
    },
  }
}

/** A middleware that carries its guard (`mw.guard`: stats, live scopes, shutdown). */
export type WithGuard<M> = M & {
  /** The guard behind this middleware: stats, live scopes, shutdown. */
  readonly guard: Guard
}

/** Exposes the guard on the middleware as the read-only, enumerable `guard` property. */
export function withGuard<M extends object>(middleware: M, guard: Guard): WithGuard<M> {
  Object.defineProperty(middleware, 'guard', { value: guard, enumerable: true })
  return middleware as WithGuard<M>
}
