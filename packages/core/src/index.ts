/**
 * `@leak-guard/core`: the API applications use, as packages/core/README.md documents it. What adapters
 * and integrations need to drive a request's scope (scope hosts, request events, answer and readiness
 * primitives, the shutdown hook, the option vocabulary) is at `@leak-guard/core/adapter`; see
 * CHANGELOG.md for the names that moved there.
 */
export {
  LeakGuardError,
  InvalidOptionError,
  AbortReasonError,
  TimeoutError,
  ClientClosedError,
  ShutdownError,
  RequestEndedError,
  PoolFullError,
  PoolQueueTimeoutError,
  PoolClosedError,
  WorkerError,
  WorkerExitError,
  WorkerResourceLimitsError,
  JobFailedError,
  JobCancelledError,
  QueueUnavailableError,
  errorCodes,
  isLeakGuardError,
} from './errors.js'
export type { ErrorCode, LeakGuardErrorOptions } from './errors.js'

export { Guard, createGuard } from './scope/guard.js'
export type { GuardOptions, ResolvedGuardOptions, GuardStats, LeakEvent, Closeable, InboundDeadlineResult } from './scope/guard.js'
export type { InboundDeadlineOptions, ResolvedInboundDeadline, OutboundDeadlineHeader, DeadlineHeaderKind } from './timeout/deadline-header.js'
export { RequestScope } from './scope/request-scope.js'
export type { ScopedWork, ScopeOutcome } from './scope/request-scope.js'
export { currentScope, currentSignal } from './scope/context.js'

export { Dispatcher, createDispatcher } from './dispatch/dispatcher.js'
export type { DispatcherOptions, DispatchedWork } from './dispatch/dispatcher.js'
export { ThreadPool, createThreadPool } from './dispatch/thread-pool.js'
export type { ThreadPoolOptions, ThreadRunOptions } from './dispatch/thread-pool.js'
export type { AdmissionOptions, RunOptions } from './dispatch/options.js'
export type { PoolStats } from './dispatch/stats.js'

export { hardenServer } from './server/harden.js'
export type { HardenOptions, ResolvedHardenOptions, AnyServer } from './server/harden.js'
export { createShutdown, GracefulShutdown } from './server/shutdown.js'
export type { ShutdownOptions, ResolvedShutdownOptions, ShutdownSummary } from './server/shutdown.js'
export type { IdleConnections } from './server/drain.js'
export { createReadinessHandler } from './server/readiness.js'
export type { ClosingState } from './respond/index.js'

export { formatSnapshot } from './observe/snapshot.js'
export type { GuardSnapshot, ScopeSnapshot, TaskSnapshot } from './observe/snapshot.js'
export { createDebugHandler, dumpOnSignal } from './observe/debug.js'
export type { DebugHandler, DumpOnSignalOptions } from './observe/debug.js'
export { createMetrics } from './observe/metrics.js'
export type { MetricsOptions, GuardMetrics, MetricsRegistry, MetricsClient } from './observe/metrics.js'
export type { LeakLogger } from './observe/leak-log.js'

export { ClientQueueFullError, ClientTimeoutError } from './errors.js'
// The HTTP client lives at '@leak-guard/core/client': importing undici installs its Agent as the global
// dispatcher of Node's fetch, which an app that does not use the client must not get as a side effect.
