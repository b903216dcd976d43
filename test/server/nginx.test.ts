import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ChildApp, ThrowawayNginx, fixtures, freePort, hasTool, sleep, waitForPort } from './helpers.js'

// Rolling restart behind a real load balancer: nginx (examples/nginx/nginx.conf, upstream keep-alive)
// in front of two instances, under steady POST load (autocannon, a JSON body with a unique order id
// per request). Each instance in turn gets SIGTERM while a replacement takes its place. POST is the
// case that matters: nginx retries a GET on the other instance after any error, so a GET test passes
// even for an app that simply dies, but it does not resend a POST it already wrote. Guarded run
// (examples/nginx/app.mjs, `idleConnections: 'serve'`): 0 errors, 0 non-2xx, every order taken exactly
// once. Control run (fixtures/nginx-control.mjs, dies on SIGTERM), same nginx and load: must lose
// requests, which shows the test can fail. Install nginx with `apt-get install -y nginx` (Debian).
const example = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'nginx')
const require = createRequire(import.meta.url)

interface AutocannonResult {
  errors: number
  timeouts: number
  non2xx: number
  '2xx': number
  requests: { total: number; average: number }
  statusCodeStats: Record<string, { count: number }>
}
type Autocannon = (options: Record<string, unknown>, done: (error: Error | null, result: AutocannonResult) => void) => { stop(): void }
const autocannon = require('autocannon') as Autocannon

// Load shape: 16 connections at up to 250 requests/s, handlers taking 40 ms, so about ten requests are
// in flight at any moment (the control then reliably has some in flight when it dies). 2 500 orders
// take about 10 s, long enough for both restarts on a loaded machine.
const ORDERS = 2_500
const WORK_MS = '40'




interface RunResult {
  result: AutocannonResult
  orders: Array<{ id: number; pid: number }>
  summaries: Array<Record<string, unknown>>
  exits: Array<{ code: number | null; signal: NodeJS.Signals | null; at: number }>
  restartsDoneAt: number
  loadDoneAt: number
  /** nginx's error.log, one count per kind of message (what nginx saw go wrong upstream). */
  nginxErrors: Record<string, number>
}

function nginxErrors(file: string): Record<string, number> {
  const counts: Record<string, number> = {}
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return counts
  }
  for (const line of text.split('\n')) {
    // "2026/11/28 17:00:00 [error] 123#0: *45 connect() failed (111: Connection refused) while connecting to upstream, client: ..."
    const m = /\[(\w+)\] \d+#\d+: (?:\*\d+ )?([^,]+)/.exec(line)
    if (m) counts[`${m[1]}: ${m[2]}`] = (counts[`${m[1]}: ${m[2]}`] ?? 0) + 1
  }
  return counts
}

describe('nginx in front of two instances, rolling SIGTERM restarts under POST load', function () {
  this.timeout(60_000)
  let nginx: ThrowawayNginx | undefined
  const instances: ChildApp[] = []
  let stopLoad: (() => void) | undefined

  before(function () {
    if (!hasTool('nginx')) {
      console.log('      SKIPPED: nginx is not installed (apt-get install -y nginx)')
      this.skip()
    }
  })

  afterEach(async () => {
    // A run that failed half-way leaves its load running: stop it before the next run starts.
    stopLoad?.()
    stopLoad = undefined
    for (const app of instances.splice(0)) {
      app.kill('SIGKILL')
      await app.exited
    }
    await nginx?.stop()
    nginx = undefined
  })

  /** Starts nginx and two instances of `script`, runs the load and restarts both instances in turn. */
  async function rollingRestart(script: string, guarded: boolean): Promise<RunResult> {
    const [port, portA, portB] = [await freePort(), await freePort(), await freePort()]
    const proxy = (nginx = new ThrowawayNginx((prefix) =>
      readFileSync(join(example, 'nginx.conf'), 'utf8')
        .replaceAll('{{prefix}}', prefix)
        .replaceAll('{{port}}', String(port))
        .replaceAll('{{portA}}', String(portA))
        .replaceAll('{{portB}}', String(portB)),
    ))

    const all: ChildApp[] = []
    const startInstance = (appPort: number): ChildApp => {
      const app = new ChildApp(script, { PORT: String(appPort), WORK_MS, ORDER_LOG: '1' })
      instances.push(app)
      all.push(app)
      return app
    }
    const a = startInstance(portA)
    const b = startInstance(portB)
    await a.waitFor('listening')
    await b.waitFor('listening')
    proxy.start()
    await waitForPort(port, 5_000)

    let next = 0
    let loadDoneAt = 0
    const load = new Promise<AutocannonResult>((resolve, reject) => {
      const instance = autocannon(
        {
          url: `http://127.0.0.1:${port}`,
          connections: 16,
          overallRate: 250,
          amount: ORDERS,
          timeout: 5,
          requests: [
            {
              method: 'POST',
              path: '/orders',
              headers: { 'content-type': 'application/json' },
              // Called for every request: each carries its own order id.
              setupRequest: (req: Record<string, unknown>) => ({ ...req, body: JSON.stringify({ id: ++next }) }),
            },
          ],
        },
        (error, result) => {
          loadDoneAt = performance.now()
          stopLoad = undefined
          if (error) reject(error)
          else resolve(result)
        },
      )
      stopLoad = () => instance.stop()
    })

    const summaries: Array<Record<string, unknown>> = []
    const exits: RunResult['exits'] = []
    const restart = async (old: ChildApp, appPort: number): Promise<void> => {
      old.kill('SIGTERM')
      if (guarded) summaries.push(await old.waitFor('summary'))
      exits.push(await old.exited)
      const fresh = startInstance(appPort)
      await fresh.waitFor('listening')
      // A rolling restart goes on only once the balancer sends traffic to the replacement. nginx's
      // passive checks keep an instance that refused a connection out of rotation for fail_timeout,
      // counted in whole seconds (up to ~2 s): restarting the other instance earlier leaves nginx
      // with both marked down, and it answers 502 "no live upstreams" without trying either.
      await fresh.waitFor('order', 5_000)
    }
    await sleep(1_000)
    await restart(a, portA)
    await restart(b, portB)
    const restartsDoneAt = performance.now()
    const result = await load
    const orders = all.flatMap((app) => app.events.filter((e) => e.event === 'order')) as unknown as RunResult['orders']
    return { result, orders, summaries, exits, restartsDoneAt, loadDoneAt, nginxErrors: nginxErrors(join(proxy.prefix, 'error.log')) }
  }

  function report(label: string, run: RunResult): void {
    const { result } = run
    const pids = new Set(run.orders.map((o) => o.pid))
    console.log(
      `      ${label}: ${result.requests.total} requests, ${result['2xx']} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts; ${run.orders.length} orders taken by ${pids.size} processes`,
    )
    const statuses = Object.entries(result.statusCodeStats).map(([code, { count }]) => `${code}: ${count}`).join(', ')
    console.log(`      statuses {${statuses}}; nginx error.log ${JSON.stringify(run.nginxErrors)}`)
  }

  it('loses no POST and takes none twice while each instance is restarted in turn', async () => {
    const run = await rollingRestart(join(example, 'app.mjs'), true)
    report('guarded (idleConnections: serve)', run)
    console.log(`      drain summaries: ${run.summaries.map((s) => JSON.stringify({ drained: s.drained, rejected: s.rejected, aborted: s.aborted, forced: s.forced, durationMs: s.durationMs })).join(' ')}`)
    const { result, orders } = run
    // Both restarts happened under load, and both instances exited by themselves after draining.
    expect(run.restartsDoneAt).to.be.below(run.loadDoneAt)
    expect(run.exits.map((e) => e.code)).to.deep.equal([0, 0])
    for (const s of run.summaries) expect(s).to.include({ aborted: 0, forced: 0, rejected: 0 })
    expect(result.errors).to.equal(0)
    expect(result.timeouts).to.equal(0)
    expect(result.non2xx).to.equal(0)
    expect(result['2xx']).to.equal(ORDERS)
    // Every order the load sent was taken exactly once: no loss, no duplicate from a retried POST.
    const ids = orders.map((o) => o.id).sort((x, y) => x - y)
    expect(new Set(ids).size).to.equal(ids.length)
    expect(ids).to.deep.equal(Array.from({ length: ORDERS }, (_, i) => i + 1))
    // Four processes took orders: both originals and both replacements.
    expect(new Set(orders.map((o) => o.pid)).size).to.equal(4)
  })

  it('control: the same restarts lose requests when the instances die on SIGTERM', async () => {
    const run = await rollingRestart(join(fixtures, 'nginx-control.mjs'), false)
    report('control (dies on SIGTERM)', run)
    const { result } = run
    for (const e of run.exits) expect(e.signal).to.equal('SIGTERM')
    expect(result.errors + result.timeouts + result.non2xx).to.be.above(0)
  })
})
