/**
 * `@leak-guard/pg`: a request's deadline and cancellation reach PostgreSQL through a node-postgres pool.
 * `guardPool(pool, options?)` instruments the pool in place; see the README for what it does, its
 * options and its limits.
 */
export { guardPool } from './guard-pool.js'
export type { GuardPoolOptions, ShutdownRegistry } from './options.js'
