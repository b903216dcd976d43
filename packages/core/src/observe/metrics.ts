import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { checkKeys, invalid, millisecondsOrFalse } from '../options.js'
import type { Guard } from '../scope/guard.js'
import { isGuard } from '../brand.js'
import type { RequestScope, ScopeOutcome } from '../scope/request-scope.js'

type PromClient = typeof import('prom-client')

/**
 * What leak-guard needs of a prom-client `Registry`, spelled out so that these declarations do not
 * import prom-client's: an app without the optional peer installed still type-checks without
 * `skipLibCheck`. Any prom-client `Registry` (or `AggregatorRegistry`) fits.
 */
export interface MetricsRegistry {
  registerMetric(metric: never): void
  removeSingleMetric(name: string): void
}

/** What leak-guard needs of the prom-client module (see `MetricsRegistry`); `import * as client from 'prom-client'` fits. */
export interface MetricsClient {
  Counter: abstract new (configuration: never) => unknown
  Gauge: abstract new (configuration: never) => unknown
  Histogram: abstract new (configuration: never) => unknown
  register: MetricsRegistry
}

export interface MetricsOptions {
  /**
   * The registry the metrics are registered in: your own `new Registry()`, or the one a cluster
   * master aggregates with `AggregatorRegistry`.
   * @default prom-client's global `register`
   */
  register?: MetricsRegistry
  /**
   * Prefix of every metric name.
   * @default 'leakguard_'
   */
  prefix?: string
  /**
   * Upper bounds of the request duration histogram, in seconds.
   * @default [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
   */
  buckets?: number[]
  /**
   * Sample the event-loop delay with `perf_hooks.monitorEventLoopDelay` at this resolution (ms);
   * `false` for no event-loop metric. Sampling starts with `createMetrics()` and stops with `close()`.
   * @default 20
   */
  eventLoopDelay?: number | false
  /**
   * The prom-client module to build the metrics with. By default it is imported (lazily, on this
   * call) from where @leak-guard/core is installed; pass yours when that would find another copy.
   * @default await import('prom-client')
   */
  client?: MetricsClient
}

/** The Prometheus metrics of one guard in one registry. */
export interface GuardMetrics {
  /** Names of the registered metrics. */
  readonly names: readonly string[]
  /** Removes the metrics from the registry, stops event-loop sampling and per-request observation. Idempotent. */
  close(): void
}

const defaultBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const outcomes: readonly ScopeOutcome[] = ['ok', 'timeout', 'client-closed', 'shutdown']
const abortReasons = ['timeout', 'client-closed', 'shutdown'] as const
const inboundResults = ['shortened', 'ignored', 'invalid'] as const

async function loadClient(client: unknown): Promise<PromClient> {
  if (client !== undefined) {
    if (client === null || typeof client !== 'object' || typeof (client as PromClient).Counter !== 'function') {
      throw invalid('client', 'the prom-client module', client)
    }
    return client as PromClient
  }
  let mod: PromClient & { default?: PromClient }
  try {
    mod = await import('prom-client')
  } catch (error) {
    const err = invalid('client', 'the prom-client module (prom-client is not installed: `npm i prom-client`)', undefined)
    ;(err as { cause?: unknown }).cause = error
    throw err
  }
  return typeof mod.Counter === 'function' ? mod : (mod.default as PromClient)
}

interface StatsSource {
  stats(): unknown
  name?: unknown
}

/** Numeric fields of a resource's `stats()`, one level of nesting flattened with `_`. */
function flatten(stats: unknown, into: Array<[string, number]>, prefix = ''): void {
  if (stats === null || typeof stats !== 'object') return
  for (const [key, value] of Object.entries(stats)) {
    if (typeof value === 'number' && Number.isFinite(value)) into.push([prefix + key, value])
    // Per-origin objects of an HTTP client have their own metric (`client_origin_stat`).
    else if (prefix === '' && value !== null && typeof value === 'object' && !key.includes('://')) flatten(value, into, `${key}_`)
  }
}

function resourcesWithStats(guard: Guard): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = []
  const seen = new Map<string, number>()
  for (const resource of guard.resources()) {
    const source = resource as unknown as StatsSource
    if (typeof source.stats !== 'function') continue
    let name = typeof source.name === 'string' && source.name !== '' ? source.name : (resource.constructor?.name ?? 'resource').toLowerCase()
    const count = (seen.get(name) ?? 0) + 1
    seen.set(name, count)
    if (count > 1) name = `${name}_${count}`
    let stats: unknown
    try {
      stats = source.stats()
    } catch {
      continue
    }
    out.push([name, stats])
  }
  return out
}

/**
 * Prometheus metrics for `guard`, built with prom-client (an optional peer dependency, imported only
 * here) and registered in `register`. Counters are read from `guard.stats()` when the registry is
 * scraped; the only per-request cost is one histogram observation when a request ends. Every metric is
 * a standard prom-client type with a `collect()` callback, so `AggregatorRegistry` sums them across
 * cluster workers (event-loop delay takes the worst worker).
 *
 * Metrics (with the default prefix): `leakguard_requests_in_flight`, `leakguard_request_duration_seconds`
 * {outcome="ok|timeout|client-closed|shutdown"}, `leakguard_aborts_total`{reason},
 * `leakguard_late_work_total`{kind="spawn|task|request|handler|query|job"},
 * `leakguard_inbound_deadlines_total`{result="shortened|ignored|invalid"}, `leakguard_detached_tasks`,
 * `leakguard_event_loop_delay_seconds`{stat="min|mean|p50|p90|p99|max"}, and for registered resources
 * with a `stats()` method (dispatchers, thread pools, clients): `leakguard_pool_queued`{resource},
 * `leakguard_pool_running`, `leakguard_pool_wait_seconds_mean`, `leakguard_pool_run_seconds_mean`,
 * every numeric stat as `leakguard_resource_stat`{resource,stat}, and for HTTP clients (stats keyed by
 * origin) `leakguard_client_origin_stat`{resource,origin,stat="open|busy|queued|aborted|rejected"}.
 *
 * @example
 * const register = new Registry()
 * const metrics = await createMetrics(mw.guard, { register })
 * app.get('/metrics', async (req, res) => res.type(register.contentType).send(await register.metrics()))
 */
export async function createMetrics(guard: Guard, options?: MetricsOptions): Promise<GuardMetrics> {
  if (!isGuard(guard)) {
    throw invalid('guard', 'a leak-guard Guard', guard)
  }
  const o = checkKeys('createMetrics()', options, ['register', 'prefix', 'buckets', 'eventLoopDelay', 'client'])
  const prefix = o.prefix === undefined ? 'leakguard_' : o.prefix
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:]?[a-zA-Z0-9_:]*$/.test(prefix)) {
    throw invalid('prefix', 'a Prometheus metric name prefix (letters, digits, `_`, `:`)', prefix)
  }
  const buckets = o.buckets === undefined ? defaultBuckets : o.buckets
  if (!Array.isArray(buckets) || buckets.length === 0 || buckets.some((b, i) => typeof b !== 'number' || !(b > 0) || !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]))) {
    throw invalid('buckets', 'a non-empty increasing array of positive numbers', buckets)
  }
  const resolution = millisecondsOrFalse('eventLoopDelay', o.eventLoopDelay, 20)
  if (o.register !== undefined && (o.register === null || typeof (o.register as Registry).registerMetric !== 'function')) {
    throw invalid('register', 'a prom-client Registry', o.register)
  }
  const client = await loadClient(o.client)
  const register = (o.register as Registry | undefined) ?? client.register
  const name = (suffix: string): string => prefix + suffix

  const metrics: Array<Counter | Gauge | Histogram> = []

  metrics.push(
    new client.Gauge({
      name: name('requests_in_flight'),
      help: 'Requests being handled now.',
      registers: [],
      collect() {
        this.set(guard.size)
      },
    }),
  )

  const duration = new client.Histogram<'outcome'>({
    name: name('request_duration_seconds'),
    help: 'Time from when leak-guard saw a request until its response closed, by outcome.',
    labelNames: ['outcome'],
    buckets: buckets as number[],
    registers: [],
  })
  for (const outcome of outcomes) duration.zero({ outcome })
  metrics.push(duration)

  metrics.push(
    new client.Counter<'reason'>({
      name: name('aborts_total'),
      help: 'Requests aborted by timeout, client disconnect or shutdown (counted when their response closes).',
      labelNames: ['reason'],
      registers: [],
      collect() {
        const ended = guard.stats().ended
        this.reset()
        for (const reason of abortReasons) this.inc({ reason }, ended[reason])
      },
    }),
  )

  metrics.push(
    new client.Counter<'kind'>({
      name: name('late_work_total'),
      help: 'Work that outlived its request (spawn tasks, dispatcher tasks, outgoing calls, late handlers, queries, jobs), by kind.',
      labelNames: ['kind'],
      registers: [],
      collect() {
        const leaks = guard.stats().leaks
        this.reset()
        for (const kind of Object.keys(leaks) as Array<keyof typeof leaks>) this.inc({ kind }, leaks[kind])
      },
    }),
  )

  metrics.push(
    new client.Counter<'result'>({
      name: name('inbound_deadlines_total'),
      help: 'Requests that came with a deadline header (inboundDeadline), by what it did: shortened the local deadline, ignored (not earlier), invalid (malformed).',
      labelNames: ['result'],
      registers: [],
      collect() {
        const counts = guard.stats().inboundDeadlines
        this.reset()
        for (const result of inboundResults) this.inc({ result }, counts[result])
      },
    }),
  )

  metrics.push(
    new client.Gauge({
      name: name('detached_tasks'),
      help: 'Work started with detach() that is still running.',
      registers: [],
      collect() {
        this.set(guard.stats().detached)
      },
    }),
  )

  // Resources are read at scrape time: dispatchers and clients registered after createMetrics() appear too.
  const poolGauge = (suffix: string, help: string, read: (stats: Record<string, unknown>) => number | undefined): Gauge<'resource'> =>
    new client.Gauge<'resource'>({
      name: name(suffix),
      help,
      labelNames: ['resource'],
      registers: [],
      collect() {
        this.reset()
        for (const [resource, stats] of resourcesWithStats(guard)) {
          const value = stats !== null && typeof stats === 'object' ? read(stats as Record<string, unknown>) : undefined
          if (value !== undefined && Number.isFinite(value)) this.set({ resource }, value)
        }
      },
    })
  const num = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined)
  metrics.push(
    poolGauge('pool_queued', 'Tasks waiting in a dispatcher or thread pool queue.', (s) => num(s.queued)),
    poolGauge('pool_running', 'Tasks running in a dispatcher or thread pool.', (s) => num(s.running)),
    poolGauge('pool_wait_seconds_mean', 'Mean time tasks waited in the queue.', (s) => (num(s.meanWaitMs) ?? NaN) / 1000),
    poolGauge('pool_run_seconds_mean', 'Mean run time of completed tasks.', (s) => (num(s.meanRunMs) ?? NaN) / 1000),
    new client.Gauge<'resource' | 'stat'>({
      name: name('resource_stat'),
      help: 'Every numeric field of the stats() of resources registered with the guard (dispatchers, pools, clients).',
      labelNames: ['resource', 'stat'],
      registers: [],
      collect() {
        this.reset()
        for (const [resource, stats] of resourcesWithStats(guard)) {
          const fields: Array<[string, number]> = []
          flatten(stats, fields)
          for (const [stat, value] of fields) this.set({ resource, stat }, value)
        }
      },
    }),
  )

  // An HTTP client's stats() is keyed by origin: { 'http://host:port': { open, busy, queued, ... } }.
  metrics.push(
    new client.Gauge<'resource' | 'origin' | 'stat'>({
      name: name('client_origin_stat'),
      help: 'Per-origin numbers of HTTP clients registered with the guard: open and busy connections, queued, aborted and rejected calls.',
      labelNames: ['resource', 'origin', 'stat'],
      registers: [],
      collect() {
        this.reset()
        for (const [resource, stats] of resourcesWithStats(guard)) {
          if (stats === null || typeof stats !== 'object') continue
          for (const [origin, perOrigin] of Object.entries(stats)) {
            if (!origin.includes('://') || perOrigin === null || typeof perOrigin !== 'object') continue
            for (const [stat, value] of Object.entries(perOrigin as Record<string, unknown>)) {
              if (typeof value === 'number' && Number.isFinite(value)) this.set({ resource, origin, stat }, value)
            }
          }
        }
      },
    }),
  )

  let monitor: IntervalHistogram | undefined
  if (resolution !== false) {
    const histogram = monitorEventLoopDelay({ resolution })
    histogram.enable()
    monitor = histogram
    metrics.push(
      new client.Gauge<'stat'>({
        name: name('event_loop_delay_seconds'),
        help: 'Event-loop delay since the previous scrape (perf_hooks.monitorEventLoopDelay).',
        labelNames: ['stat'],
        registers: [],
        aggregator: 'max',
        collect() {
          // Values cover the time since the previous scrape; a scrape right after another keeps them.
          if (histogram.count > 0) {
            this.reset()
            const s = (ns: number): number => ns / 1e9
            this.set({ stat: 'min' }, s(histogram.min))
            this.set({ stat: 'mean' }, s(histogram.mean))
            this.set({ stat: 'p50' }, s(histogram.percentile(50)))
            this.set({ stat: 'p90' }, s(histogram.percentile(90)))
            this.set({ stat: 'p99' }, s(histogram.percentile(99)))
            this.set({ stat: 'max' }, s(histogram.max))
          }
          histogram.reset()
        },
      }),
    )
  }

  const registered: string[] = []
  try {
    for (const metric of metrics) {
      register.registerMetric(metric)
      registered.push((metric as unknown as { name: string }).name)
    }
  } catch (error) {
    for (const n of registered) register.removeSingleMetric(n)
    monitor?.disable()
    throw error
  }

  const observe = (scope: RequestScope, outcome: ScopeOutcome): void => {
    duration.observe({ outcome }, scope.age() / 1000)
  }
  const stopObserving = guard.onScopeEnd(observe)

  let closed = false
  return {
    names: Object.freeze([...registered]),
    close() {
      if (closed) return
      closed = true
      stopObserving()
      monitor?.disable()
      for (const n of registered) register.removeSingleMetric(n)
    },
  }
}
