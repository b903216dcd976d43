/**
 * Every internal key of core, in one place: the symbols through which core's modules drive each
 * other's objects. Not exported from either entry point: user code reads a scope, it does not end it.
 * (Keys shared between copies of the package use `Symbol.for` and live next to what they share:
 * the context store, the error brand, the guard brand.)
 */

/** Leak-guard's own abort subscribers (pools, the HTTP client, the agent): run before user listeners. */
export const kSubscribe = Symbol('leak-guard.scope.subscribe')
