/**
 * Every internal key of core, in one place: the symbols through which core's modules drive each
 * other's objects. Not exported from the main entry: user code reads a scope, it does not end it.
 * Keys private to one module (the drain's socket tags, the request-event binding, the error kind)
 * stay in that module; keys shared between copies of the package use `Symbol.for` and are listed
 * here with a `.v1` suffix.
 */

// A request scope's lifecycle, driven by the guard and the adapters.
/** Ends a scope when its response closed. */
export const kEnd = Symbol('leak-guard.scope.end')
/** (Re)arms a scope's own deadline timer. */
export const kArm = Symbol('leak-guard.scope.arm')
/** Aborts a scope with a reason that needs an answer, and answers it. */
export const kAnswer = Symbol('leak-guard.scope.answer')
/** The scope of a response, kept on the response for its 'close' listener. */
export const kScopeOf = Symbol('leak-guard.scope.of')
/** The guard that owns a scope (late-work watcher, outgoing calls). */
export const kOwner = Symbol('leak-guard.scope.owner')
/** Attaches work started elsewhere (an outgoing call, a query) to a scope's tasks. */
export const kTrack = Symbol('leak-guard.scope.track')
/** Detaches work attached with `kTrack`. */
export const kUntrack = Symbol('leak-guard.scope.untrack')
/** Leak-guard's own abort subscribers (pools, the HTTP client, the agent): run before user listeners. */
export const kSubscribe = Symbol('leak-guard.scope.subscribe')

// Intrusive lists: links kept on the listed objects, so listing allocates nothing.
/** The guard's registry of live scopes. */
export const kLivePrev = Symbol('leak-guard.scope.live.prev')
export const kLiveNext = Symbol('leak-guard.scope.live.next')
/** A deadline list (scopes, outgoing calls): the entry's deadline, its list and links. */
export const kDeadline = Symbol('leak-guard.deadline')
export const kList = Symbol('leak-guard.deadline.list')
export const kPrev = Symbol('leak-guard.deadline.prev')
export const kNext = Symbol('leak-guard.deadline.next')

// Shutdown, for an adapter whose framework closes the server itself (see `frameworkCloses()` in /adapter).
/** Starts the drain without closing the server (the framework does). */
export const kExternalClose = Symbol('leak-guard.shutdown.external-close')
/** Replaces `server.close()` as the way to stop accepting. */
export const kCloseServer = Symbol('leak-guard.shutdown.close-server')

/** The brand `isGuard()` checks; `Symbol.for` so a guard from another copy of core is recognised. */
export const kGuardBrand = Symbol.for('leak-guard.guard.v1')
