import { performance } from 'node:perf_hooks'
import type { RequestScope } from '../scope/request-scope.js'

/** A piece of work of an in-flight request: a `spawn` task or an outgoing HTTP call. */
export interface TaskSnapshot {
  kind: 'spawn' | 'request' | 'query' | 'job'
  /** What it is, for outgoing calls: `GET http://host/path`. */
  label: string | null
  /** Milliseconds since it started. */
  age: number
  /** Where it started, when `captureStacks` is on. */
  stack: string | null
}

/** One in-flight request, as `guard.snapshot()` sees it. Absent values are `null`, so the JSON form is complete. */
export interface ScopeSnapshot {
  id: number
  method: string
  url: string
  route: string | null
  /** Milliseconds since the guard saw the request. */
  age: number
  /** Milliseconds left before its deadline, `null` when it has none. */
  remaining: number | null
  /** `inbound` when the caller's deadline header set the deadline in force, else `local`. */
  deadlineSource: 'local' | 'inbound'
  /** `running`, or `aborted-draining` once aborted (timeout, client gone, shutdown) but not yet closed. */
  state: 'running' | 'aborted-draining'
  /** Code of the abort reason, once aborted. */
  reason: string | null
  tasks: TaskSnapshot[]
}

export interface GuardSnapshot {
  /** ISO time of the snapshot. */
  time: string
  inFlight: number
  closing: boolean
  scopes: ScopeSnapshot[]
}

interface SnapshotSource {
  scopes(): IterableIterator<RequestScope>
  readonly closing: boolean
}

const round = (ms: number): number => Math.round(ms * 10) / 10

/** Builds the live dump of `guard`: every in-flight scope, oldest first. */
export function takeSnapshot(guard: SnapshotSource, exclude?: RequestScope): GuardSnapshot {
  const now = performance.now()
  const scopes: ScopeSnapshot[] = []
  for (const scope of guard.scopes()) {
    if (scope === exclude) continue
    const remaining = scope.remaining()
    scopes.push({
      id: scope.id,
      method: scope.method,
      url: scope.url,
      route: scope.route ?? null,
      age: round(scope.age()),
      remaining: remaining === Infinity ? null : round(remaining),
      deadlineSource: scope.deadlineSource,
      state: scope.state === 'running' ? 'running' : 'aborted-draining',
      reason: scope.reason?.code ?? null,
      tasks: scope.tasks().map((task) => ({
        kind: task.kind ?? 'spawn',
        label: task.label ?? null,
        age: round(now - task.startedAt),
        stack: task.stack ?? null,
      })),
    })
  }
  return { time: new Date().toISOString(), inFlight: scopes.length, closing: guard.closing, scopes }
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((line) => prefix + line.trim())
    .join('\n')
}

/**
 * The dump as text, like a goroutine dump: requests grouped by route and state, the largest group
 * first, each request with its age, deadline and pending work (with stacks when captured).
 */
export function formatSnapshot(snapshot: GuardSnapshot): string {
  const out: string[] = [`leak-guard dump at ${snapshot.time}: ${snapshot.inFlight} request(s) in flight${snapshot.closing ? ', shutting down' : ''}`]
  const groups = new Map<string, ScopeSnapshot[]>()
  for (const scope of snapshot.scopes) {
    const key = `${scope.method} ${scope.route ?? '(no route)'} [${scope.state}${scope.reason === null ? '' : `, ${scope.reason}`}]`
    let list = groups.get(key)
    if (list === undefined) groups.set(key, (list = []))
    list.push(scope)
  }
  const sorted = [...groups].sort((a, b) => b[1].length - a[1].length)
  for (const [key, scopes] of sorted) {
    out.push('', `${scopes.length} request(s): ${key}`)
    for (const s of scopes) {
      const deadline = s.remaining === null ? 'no deadline' : `${Math.round(s.remaining)} ms left${s.deadlineSource === 'inbound' ? " (caller's deadline)" : ''}`
      out.push(`  request ${s.id} [${Math.round(s.age)} ms, ${deadline}, ${s.tasks.length} task(s)]: ${s.method} ${s.url}`)
      for (const t of s.tasks) {
        out.push(`    ${t.kind}${t.label === null ? '' : ` ${t.label}`} [${Math.round(t.age)} ms]`)
        if (t.stack !== null) out.push(indent(t.stack, '        '))
      }
    }
  }
  return out.join('\n') + '\n'
}
