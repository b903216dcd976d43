/**
 * Symbols through which the guard and the adapters drive a scope's lifecycle. Not exported from the
 * package: user code reads a scope, it does not end it.
 */
export const kEnd = Symbol('leak-guard.scope.end')
export const kArm = Symbol('leak-guard.scope.arm')
export const kAnswer = Symbol('leak-guard.scope.answer')
export const kScopeOf = Symbol('leak-guard.scope.of')
/** Links of the guard's registry of live scopes, kept on the scope so registering allocates nothing. */
export const kLivePrev = Symbol('leak-guard.scope.live.prev')
export const kLiveNext = Symbol('leak-guard.scope.live.next')
