import type { Guard } from './scope/guard.js'
import type { RequestScope, ScopeHost } from './scope/request-scope.js'
import type { AnyRequest, AnyResponse } from './types.js'

type Holder = Record<symbol, unknown>

/**
 * Where an adapter keeps a request's scope on the framework's per-request object (Express's `req`,
 * Koa's `ctx`), and the `signal`/`scope` getters it puts on that object's prototype: a request pays for
 * one own property, and the AbortSignal is only created if someone reads it. Shared by the Express and
 * Koa adapters (Fastify decorates its request itself).
 */
export interface ScopeSlot {
  /** The scope kept on `holder`, if the middleware saw it. */
  get(holder: object): RequestScope | undefined
  /**
   * Starts the scope of a request seen for the first time through `holder` (installing the getters on
   * its prototype once) and returns it; `undefined` when `holder` already has one (the middleware is
   * mounted twice, app and sub-app: the first scope stays the request's scope).
   */
  begin(holder: object, guard: Guard, req: AnyRequest, res: AnyResponse, ctx: unknown, host: ScopeHost): RequestScope | undefined
}

/**
 * A slot for `framework` (`'express'`, `'koa'`). `extra` are values defined next to the getters on the
 * holder's prototype (Koa's `ctx.leakGuard`).
 */
export function createScopeSlot(framework: string, extra?: (guard: Guard) => Record<string, unknown>): ScopeSlot {
  const key = Symbol(`leak-guard.${framework}.scope`)
  // Symbol.for: two copies of the adapter (ESM and CJS) install the getters on one prototype once.
  const installed = Symbol.for(`leak-guard.${framework}.installed.v1`)
  const descriptors = (guard: Guard): PropertyDescriptorMap => {
    const map: PropertyDescriptorMap = {
      [installed]: { value: true, configurable: true },
      signal: {
        configurable: true,
        get(this: Holder) {
          return (this[key] as RequestScope | undefined)?.signal
        },
      },
      scope: {
        configurable: true,
        get(this: Holder) {
          return this[key]
        },
      },
    }
    if (extra !== undefined) {
      const values = extra(guard)
      for (const name of Object.keys(values)) map[name] = { value: values[name], configurable: true }
    }
    return map
  }
  return {
    get(holder) {
      return (holder as Holder)[key] as RequestScope | undefined
    },
    begin(holder, guard, req, res, ctx, host) {
      const h = holder as Holder
      if (h[key] !== undefined) return undefined
      if (h[installed] !== true) Object.defineProperties(Object.getPrototypeOf(holder) as object, descriptors(guard))
      const scope = guard.begin(req, res, ctx, host)
      h[key] = scope
      return scope
    },
  }
}

/** Exposes `guard` as the middleware's read-only `guard` property (`middleware.guard`). */
export function withGuard<F extends (...args: never[]) => unknown>(middleware: F, guard: Guard): F & { readonly guard: Guard } {
  Object.defineProperty(middleware, 'guard', { value: guard, enumerable: true })
  return middleware as F & { readonly guard: Guard }
}
