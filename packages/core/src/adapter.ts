/**
 * `@leak-guard/core/adapter`: the service-provider interface for framework adapters (Express, Koa,
 * Fastify) and integrations (`@leak-guard/pg`, `@leak-guard/bullmq`). Application code uses the main
 * entry; what is here drives a request scope's lifecycle, answers for it, or attaches work to it.
 *
 * A request's life through the SPI: `guard.begin(req, res, ctx, host, timeout)` starts its scope,
 * `guard.enter(scope, fn)` runs
 * the framework's chain inside it, `bindRequestEvents(req, scope)` keeps body-stream callbacks in it,
 * the `ScopeHost` answers aborts through the framework (or core writes `writeRaw()`), the response's
 * `'close'` ends it. Integrations read the current scope (`currentScope()`) and attach their work with
 * `trackWork()`; their resources register with `guard.register()` so shutdown closes them. When the
 * work fails because the scope aborted, `withCause(scope.reason, err)` rejects with the request's reason
 * carrying the work's own error; when the integration learns of the deadline before the guard's timer
 * ran (PostgreSQL's `statement_timeout`), `expireDeadline(scope)` runs it now. A framework that closes
 * its server itself hooks the shutdown with `frameworkCloses()`.
 */

// The scope's lifecycle.
export { bindRequestEvents, currentScope } from './scope/context.js'
export type { Guard, Closeable, WorkKind, LeakEvent } from './scope/guard.js'
export type { RequestScope, ScopeHost, ScopeOutcome, SpawnedTask, AnyRequest, AnyResponse, ScopedWork } from './scope/request-scope.js'
export { isGuard } from './brand.js'
export { validateRouteTimeout } from './timeout/route-timeout.js'

// Work attached to a scope.
export { trackWork, expireDeadline, subscribeAbort } from './scope/track.js'
export { withCause } from './errors.js'
export { isOwnAbort, isUnanswerableAbort } from './scope/late-error.js'
export { warnWiring, checkSecondGuard } from './scope/wiring.js'
// The adapter kit of Express and Koa: the scope stored on `req`/`ctx`, its prototype getters, `mw.guard`.
export { createScopeSlot, withGuard } from './scope/slot.js'
export type { ScopeSlot, ScopeSlotOptions, WithGuard } from './scope/slot.js'
export type { WiringWarningCode } from './scope/wiring.js'
export type { TrackedKind } from './scope/track.js'
// Deadline headers of Connect, gRPC and Envoy, for integrations that carry a deadline over another protocol.
export { deadlineHeaderNames, parseGrpcTimeout, parseMillis, formatDeadline, readInboundDeadline, stampDeadline } from './timeout/deadline-header.js'
export type { DeadlineHeaderSpec, ResolvedInboundDeadline } from './timeout/deadline-header.js'

// The answer to an abort, and readiness.
export { needsAnswer, writeRaw, cut, neutraliseLateWrites, readinessAnswer } from './respond/index.js'
export { checkClosingState } from './server/readiness.js'
export type { AbortAnswer, AnswerBody, ClosingState, ReadinessAnswer } from './respond/index.js'
export { abortAnswer } from './respond/of-guard.js'
/** @deprecated Renamed `writeRaw` (same signature). */
export { writeRaw as answerAbortedResponse } from './respond/index.js'

// Shutdown.
export { frameworkCloses } from './server/shutdown.js'
/** @deprecated Use `frameworkCloses(shutdown, stopAccepting)`: these two keys are what it drives. */
export { kExternalClose, kCloseServer } from './symbols.js'
export { resolveHardenOptions } from './server/harden.js'

// Observability.
export { takeSnapshot } from './observe/snapshot.js'
export { formatLeak, logLeak } from './observe/leak-log.js'

// The option vocabulary: every factory checks its options once, with these, and throws LG_ERR_INVALID_OPTION.
export { invalid, checkKeys, integer, integerOrFalse, boolean } from './options.js'
