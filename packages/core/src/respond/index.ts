/**
 * The answer to an abort, in one place: whether a reason needs one (`needsAnswer`), what it is
 * (`AbortAnswer`, built once per guard from its options), how it is written when the framework has no
 * safe path (`writeRaw`), how a response already under way is cut (`cut`), and the readiness answer.
 * The scope decides when; `deliver()` decides how; the drain and the adapters take theirs from here.
 */
import type { LeakGuardError } from '../errors.js'
import type { AnyResponse } from '../types.js'
import type { AbortAnswer } from './answer.js'
import { cut, writeRaw } from './write-raw.js'

export { AbortAnswer, defaultAnswer, needsAnswer, type AnswerBody, type AnswerOptions } from './answer.js'
export { cut, neutraliseLateWrites, sendAnswer, writeRaw } from './write-raw.js'
export { readinessAnswer, type ClosingState, type ReadinessAnswer } from './readiness.js'

/** The part of an adapter's `ScopeHost` that answers: through the framework, or `false` to let core write. */
export interface AnswerHost<S> {
  answer?(scope: S, error: LeakGuardError, ctx: unknown): boolean
  cut?(scope: S, error: LeakGuardError, ctx: unknown): boolean
}

/**
 * Delivers the answer to `reason` on `res`: a response under way (headers sent) is cut, through the
 * host if it can (Koa fails its body stream) or by core; one that sent nothing is answered through the
 * host (Koa, Fastify: the framework's error path) or, when the host declines, written raw.
 */
export function deliver<S>(scope: S, res: AnyResponse, reason: LeakGuardError, host: AnswerHost<S> | undefined, ctx: unknown, answer: AbortAnswer): void {
  if (res.headersSent) {
    if (!res.writableEnded && host?.cut?.(scope, reason, ctx) !== true) cut(res)
    return
  }
  if (host?.answer?.(scope, reason, ctx) === true) return
  writeRaw(res, reason, answer.body(reason))
}
