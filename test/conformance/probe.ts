import { EventEmitter, once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { currentScope, currentSignal, type RequestScope } from '@leak-guard/core'

/**
 * What the fixture handlers saw, per request id (header `x-id`), so tests assert effects: whether the
 * downstream step ran after the abort, when the signal aborted and why.
 */
export interface Record {
  started: number
  abortedAt?: number
  reason?: string
  downstreamRan?: boolean
  downstreamSkipped?: boolean
  settledAt?: number
  contextOk?: boolean[]
  /** An `onAbort` handler registered after two throwing abort listeners ran. */
  ranAfterThrow?: boolean
}

export class Probe extends EventEmitter {
  readonly records = new Map<string, Record>()

  constructor() {
    super()
    this.setMaxListeners(0) // the mixed-load test waits on many requests at once
  }

  start(id: string, signal: AbortSignal): Record {
    const record: Record = { started: performance.now() }
    this.records.set(id, record)
    signal.addEventListener(
      'abort',
      () => {
        record.abortedAt = performance.now()
        record.reason = (signal.reason as { code?: string } | undefined)?.code
        this.emit(`abort:${id}`, record)
      },
      { once: true },
    )
    this.emit(`start:${id}`, record)
    return record
  }

  get(id: string): Record | undefined {
    return this.records.get(id)
  }

  async started(id: string): Promise<Record> {
    return this.records.get(id) ?? ((await once(this, `start:${id}`)) as [Record])[0]
  }

  async aborted(id: string, timeoutMs = 2000): Promise<Record> {
    const existing = this.records.get(id)
    if (existing?.abortedAt !== undefined) return existing
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), timeoutMs)
    try {
      return ((await once(this, `abort:${id}`, { signal: ac.signal })) as [Record])[0]
    } finally {
      clearTimeout(timer)
    }
  }
}

/** The work every framework's handlers do; each adapter only maps it onto its own request/response. */
export const work = {
  ok(probe: Probe, id: string, signal: AbortSignal, body?: unknown): unknown {
    probe.start(id, signal)
    return { aborted: signal.aborted, body: body ?? null }
  },

  /** Sleeps without watching the signal, then runs a downstream step only if the signal is not aborted. */
  async slow(probe: Probe, id: string, signal: AbortSignal, ms: number, fail: boolean): Promise<unknown> {
    const record = probe.start(id, signal)
    await sleep(ms)
    if (signal.aborted) record.downstreamSkipped = true
    else record.downstreamRan = true
    record.settledAt = performance.now()
    probe.emit(`settled:${id}`, record)
    if (fail) throw new Error('late failure from the handler')
    return { late: true }
  },

  /** Waits until the request's signal aborts. */
  async hang(probe: Probe, id: string, signal: AbortSignal): Promise<unknown> {
    probe.start(id, signal)
    if (!signal.aborted) await once(signal, 'abort')
    return { aborted: true }
  },

  /**
   * Registers an abort listener on the signal and an `onAbort` handler that both throw, then the probe's
   * own listeners after them; answers at once, or (`hang`) once the signal aborts.
   */
  async throwing(probe: Probe, id: string, scope: RequestScope, hang: boolean): Promise<unknown> {
    const signal = scope.signal
    signal.addEventListener('abort', () => {
      throw new Error(`abort listener of ${id} threw`)
    })
    scope.onAbort(() => {
      throw new Error(`onAbort handler of ${id} threw`)
    })
    const record = probe.start(id, signal)
    scope.onAbort(() => {
      record.ranAfterThrow = true
    })
    if (hang && !signal.aborted) await once(signal, 'abort')
    return { ok: true }
  },

  /** What most handlers do: awaits signal-aware work, which rejects with an AbortError (cause: the scope's reason) on abort. */
  async abortable(probe: Probe, id: string, signal: AbortSignal): Promise<unknown> {
    probe.start(id, signal)
    await sleep(10_000, undefined, { signal })
    return { aborted: false }
  },

  /** Checks that `currentScope()` is this request's scope across timers, promise chains and emitters. */
  async context(probe: Probe, id: string, scope: RequestScope): Promise<unknown> {
    const record = probe.start(id, scope.signal)
    const checks: boolean[] = []
    const check = (): void => {
      checks.push(currentScope() === scope && currentSignal() === scope.signal)
    }
    check()
    await sleep(Math.floor(Math.random() * 15))
    check()
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        check()
        resolve()
      }, Math.floor(Math.random() * 10)),
    )
    await Promise.resolve()
      .then(() => sleep(1))
      .then(check)
    const emitter = new EventEmitter()
    const fired = once(emitter, 'go')
    emitter.on('go', check)
    setImmediate(() => emitter.emit('go'))
    await fired
    await (async function deeper(depth: number): Promise<void> {
      if (depth === 0) return check()
      await sleep(1)
      return deeper(depth - 1)
    })(3)
    record.contextOk = checks
    return { ok: checks.every(Boolean), checks: checks.length }
  },
}
