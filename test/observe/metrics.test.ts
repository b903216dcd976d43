import { expect } from 'chai'
import { once } from 'node:events'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import express from 'express'
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import * as promClient from 'prom-client'
import { leakGuard } from '@leak-guard/express'
import { createDispatcher, createMetrics, type Guard, type GuardMetrics } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'
import { send, rawRequest } from '../helpers/http.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(check: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await sleep(5)
  }
}

type Json = MetricObjectWithValues<MetricValue<string>>

function value(metrics: Json[], name: string, labels: Record<string, string>): number | undefined {
  const metric = metrics.find((m) => m.name === name) ?? metrics.find((m) => String(m.type) === 'histogram' && name.startsWith(`${m.name}_`))
  const entry = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l) && ((v as { metricName?: string }).metricName ?? name) === name)
  return entry?.value
}

describe('createMetrics()', () => {
  let server: Server | undefined
  let guards: Guard[] = []
  let metrics: GuardMetrics | undefined

  afterEach(async () => {
    metrics?.close()
    metrics = undefined
    if (server !== undefined) {
      server.closeAllConnections()
      await new Promise((resolve) => server!.close(resolve))
    }
    server = undefined
    for (const guard of guards) guard.dispose()
    guards = []
  })

  async function start(): Promise<{ port: number; guard: Guard }> {
    const mw = leakGuard({ timeout: 40, leakGracePeriod: 30 })
    guards.push(mw.guard)
    const app = express()
    app.use(mw)
    app.get('/ok', (_req, res) => res.send('ok'))
    app.get('/slow', async (_req, res) => {
      await sleep(120)
      res.send('late')
    })
    app.get('/hang', (req, res) => {
      // Waits long but not past the deadline check: the client leaves first.
      req.scope.setTimeout(5_000)
      const timer = setTimeout(() => res.send('never'), 3_000)
      res.on('close', () => clearTimeout(timer))
    })
    app.get('/leaky', (req, res) => {
      void req.scope.spawn(() => sleep(100))
      res.send('ok')
    })
    server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { port: (server.address() as { port: number }).port, guard: mw.guard }
  }

  it('exports counters that match what happened: 3 timeouts, 2 disconnects, 2 ok, 1 late spawn', async () => {
    const { port, guard } = await start()
    const register = new Registry()
    metrics = await createMetrics(guard, { register, eventLoopDelay: 10 })

    const timeouts = await Promise.all([1, 2, 3].map(() => send(port, { path: '/slow' })))
    expect(timeouts.map((r) => r.status)).to.deep.equal([503, 503, 503])
    for (let i = 0; i < 2; i++) {
      const socket = connect(port, '127.0.0.1')
      await once(socket, 'connect')
      socket.write(rawRequest('GET', '/hang', `d${i}`))
      await waitFor(() => guard.size === 1)
      socket.destroy()
      await waitFor(() => guard.size === 0)
    }
    await send(port, { path: '/ok' })
    await send(port, { path: '/leaky' })
    await waitFor(() => guard.stats().leaks.spawn === 1)
    await sleep(30)

    const text = await register.metrics()
    // Every sample line is `name{labels} value` in the text format.
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue
      expect(line).to.match(/^leakguard_[a-z_]+(\{[^}]*\})? -?(\d+(\.\d+)?(e[-+]?\d+)?|NaN|\+Inf)$/)
    }
    expect(text).to.include('# TYPE leakguard_request_duration_seconds histogram')
    expect(text).to.include('leakguard_aborts_total{reason="timeout"} 3')
    expect(text).to.include('leakguard_aborts_total{reason="client-closed"} 2')

    const json = (await register.getMetricsAsJSON()) as Json[]
    expect(value(json, 'leakguard_aborts_total', { reason: 'timeout' })).to.equal(3)
    expect(value(json, 'leakguard_aborts_total', { reason: 'client-closed' })).to.equal(2)
    expect(value(json, 'leakguard_aborts_total', { reason: 'shutdown' })).to.equal(0)
    expect(value(json, 'leakguard_request_duration_seconds_count', { outcome: 'timeout' })).to.equal(3)
    expect(value(json, 'leakguard_request_duration_seconds_count', { outcome: 'client-closed' })).to.equal(2)
    expect(value(json, 'leakguard_request_duration_seconds_count', { outcome: 'ok' })).to.equal(2)
    expect(value(json, 'leakguard_request_duration_seconds_count', { outcome: 'shutdown' })).to.equal(0)
    // The three timeouts took at least their 40 ms deadline.
    expect(value(json, 'leakguard_request_duration_seconds_sum', { outcome: 'timeout' })).to.be.at.least(0.12)
    expect(value(json, 'leakguard_request_duration_seconds_bucket', { outcome: 'timeout', le: '0.025' })).to.equal(0)
    expect(value(json, 'leakguard_late_work_total', { kind: 'spawn' })).to.equal(1)
    expect(value(json, 'leakguard_late_work_total', { kind: 'request' })).to.equal(0)
    expect(value(json, 'leakguard_requests_in_flight', {})).to.equal(0)
    expect(value(json, 'leakguard_event_loop_delay_seconds', { stat: 'max' })).to.be.a('number').and.to.be.above(0)

    // The cluster master sums what the workers report.
    const merged = AggregatorRegistry.aggregate([json, json])
    const mergedJson = (await merged.getMetricsAsJSON()) as Json[]
    expect(value(mergedJson, 'leakguard_aborts_total', { reason: 'timeout' })).to.equal(6)
    expect(value(mergedJson, 'leakguard_request_duration_seconds_count', { outcome: 'client-closed' })).to.equal(4)
    expect(await merged.metrics()).to.include('leakguard_late_work_total{kind="spawn"} 2')
  })

  it('reports the requests in flight and the stats of registered resources', async () => {
    const { port, guard } = await start()
    const register = new Registry()
    metrics = await createMetrics(guard, { register, eventLoopDelay: false })
    const unregister = guard.register({
      name: 'db',
      close: async () => {},
      stats: () => ({ queued: 2, running: 3, meanWaitMs: 5, meanRunMs: 250, rejected: { full: 1 } }),
    } as never)
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write(rawRequest('GET', '/hang', 'x'))
    await waitFor(() => guard.size === 1)
    const json = (await register.getMetricsAsJSON()) as Json[]
    socket.destroy()
    unregister()
    expect(value(json, 'leakguard_requests_in_flight', {})).to.equal(1)
    expect(value(json, 'leakguard_pool_queued', { resource: 'db' })).to.equal(2)
    expect(value(json, 'leakguard_pool_running', { resource: 'db' })).to.equal(3)
    expect(value(json, 'leakguard_pool_wait_seconds_mean', { resource: 'db' })).to.equal(0.005)
    expect(value(json, 'leakguard_pool_run_seconds_mean', { resource: 'db' })).to.equal(0.25)
    expect(value(json, 'leakguard_resource_stat', { resource: 'db', stat: 'rejected_full' })).to.equal(1)
    expect(json.find((m) => m.name === 'leakguard_event_loop_delay_seconds')).to.equal(undefined)
  })

  it('reads the stats of a real dispatcher and HTTP client registered with the guard', async () => {
    const { port, guard } = await start()
    const register = new Registry()
    metrics = await createMetrics(guard, { register, eventLoopDelay: false })
    const dispatcher = createDispatcher({ concurrency: 1, guard })
    const httpClient = createHttpClient({ connections: 2, guard })
    try {
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const running = dispatcher.run(() => gate)
      const queued = dispatcher.run(() => undefined)
      expect((await httpClient.fetch(`http://127.0.0.1:${port}/ok`)).status).to.equal(200)
      const json = (await register.getMetricsAsJSON()) as Json[]
      const pool = json.find((m) => m.name === 'leakguard_pool_queued')!.values
      expect(pool.map((v) => v.value)).to.deep.equal([1])
      const resource = String(pool[0].labels.resource)
      expect(value(json, 'leakguard_pool_running', { resource })).to.equal(1)
      const origin = json.find((m) => m.name === 'leakguard_client_origin_stat')!.values.filter((v) => v.labels.stat === 'open')
      expect(origin.map((v) => [v.labels.origin, v.value])).to.deep.equal([[`http://127.0.0.1:${port}`, 1]])
      release()
      await Promise.all([running, queued])
    } finally {
      await dispatcher.close()
      await httpClient.close()
    }
  })

  it('unregisters its metrics and stops observing requests on close()', async () => {
    const { port, guard } = await start()
    const register = new Registry()
    const m = await createMetrics(guard, { register, client: promClient })
    expect(m.names).to.include('leakguard_requests_in_flight')
    await send(port, { path: '/ok' })
    const histogram = register.getSingleMetric('leakguard_request_duration_seconds')!
    m.close()
    m.close()
    expect(register.getMetricsAsArray()).to.have.length(0)
    await send(port, { path: '/ok' })
    const after = await histogram.get()
    const count = after.values.find((v) => (v as { metricName?: string }).metricName === 'leakguard_request_duration_seconds_count' && v.labels.outcome === 'ok')
    expect(count?.value).to.equal(1)
    // A second set can be registered in the same registry once the first is closed.
    metrics = await createMetrics(guard, { register, prefix: 'app_lg_' })
    expect(register.getSingleMetric('app_lg_aborts_total')).to.not.equal(undefined)
  })

  it('validates its options once, at creation', async () => {
    const mw = leakGuard()
    guards.push(mw.guard)
    for (const bad of [{ prefix: 'no-dash' }, { buckets: [1, 0.5] }, { eventLoopDelay: 0 }, { register: {} }, { client: {} }, { nope: 1 }]) {
      let error: unknown
      try {
        await createMetrics(mw.guard, bad as never)
      } catch (e) {
        error = e
      }
      expect(error, JSON.stringify(bad)).to.have.property('code', 'LG_ERR_INVALID_OPTION')
    }
  })
})
