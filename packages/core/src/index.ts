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
  errorCodes,
  isLeakGuardError,
} from './errors.js'
export type { ErrorCode, LeakGuardErrorOptions } from './errors.js'

export { Guard, createGuard } from './scope/guard.js'
export type { GuardOptions, ResolvedGuardOptions, GuardStats, LeakEvent, Closeable } from './scope/guard.js'
export { RequestScope } from './scope/request-scope.js'
export type { ScopeHost, ScopedWork, ScopeOutcome, SpawnedTask, AnyRequest, AnyResponse } from './scope/request-scope.js'
export { currentScope, currentSignal, bindRequestEvents } from './scope/context.js'

export { writeRaw as answerAbortedResponse, neutraliseLateWrites } from './respond/index.js'
export { validateRouteTimeout } from './timeout/route-timeout.js'

export { Dispatcher, createDispatcher } from './dispatch/dispatcher.js'
export type { DispatcherOptions, DispatchedWork } from './dispatch/dispatcher.js'
export { ThreadPool, createThreadPool } from './dispatch/thread-pool.js'
export type { ThreadPoolOptions, ThreadRunOptions } from './dispatch/thread-pool.js'
export type { AdmissionOptions, RunOptions, PoolStats } from './dispatch/admission.js'

export { hardenServer, resolveHardenOptions } from './server/harden.js'
export type { HardenOptions, ResolvedHardenOptions, AnyServer } from './server/harden.js'
export { createShutdown, GracefulShutdown, kExternalClose, kCloseServer } from './server/shutdown.js'
export type { ShutdownOptions, ResolvedShutdownOptions, ShutdownSummary } from './server/shutdown.js'
export type { IdleConnections } from './server/drain.js'
export { createReadinessHandler } from './server/readiness.js'
export { readinessAnswer } from './respond/index.js'
export type { ClosingState, ReadinessAnswer } from './respond/index.js'

export { takeSnapshot, formatSnapshot } from './observe/snapshot.js'
export type { GuardSnapshot, ScopeSnapshot, TaskSnapshot } from './observe/snapshot.js'
export { createDebugHandler, dumpOnSignal } from './observe/debug.js'
export type { DebugHandler, DumpOnSignalOptions } from './observe/debug.js'
export { createMetrics } from './observe/metrics.js'
export type { MetricsOptions, GuardMetrics } from './observe/metrics.js'
export { formatLeak, logLeak } from './observe/leak-log.js'
export type { LeakLogger } from './observe/leak-log.js'

export { ClientQueueFullError, ClientTimeoutError } from './errors.js'
// The HTTP client lives at '@leak-guard/core/client': importing undici installs its Agent as the global
// dispatcher of Node's fetch, which an app that does not use the client must not get as a side effect.
