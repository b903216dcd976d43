import type { Guard } from '../scope/guard.js'
import type { AbortAnswer } from './answer.js'

/**
 * The answer `guard` gives to aborts that need one: `status`/`headers` ride on the abort reason,
 * `custom` is the `timeoutBody` to send as is (an adapter that answers through its framework sends it
 * instead of the framework's error rendering), `body(error)` is what core writes raw.
 */
export function abortAnswer(guard: Guard): AbortAnswer {
  return guard.answer
}
