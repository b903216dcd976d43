import { expect } from 'chai'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ChildApp, sleep } from './helpers.js'

// Rolling restart behind a real load balancer: nginx (examples/nginx/nginx.conf) in front of two
// instances of examples/nginx/app.mjs, under steady autocannon load. Each instance in turn gets
// SIGTERM, drains, exits and is started again; the load must see 0 failed requests. Install nginx
// with `apt-get install -y nginx` (Debian package).
const example = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'nginx')
const require = createRequire(import.meta.url)

interface AutocannonResult {
  errors: number
  timeouts: number
  non2xx: number
  '2xx': number
  requests: { total: number; average: number }
  latency: { p99: number; p50: number }
}
const autocannon = require('autocannon') as (options: Record<string, unknown>) => Promise<AutocannonResult>

function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name} || test -x /usr/sbin/${name}`]).status === 0
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = performance.now() + ms
  while (performance.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`port ${port} not open within ${ms} ms`)
}

describe('nginx in front of two instances, rolling SIGTERM restarts', function () {
  this.timeout(60_000)
  let nginx: ChildProcess | undefined
  let prefix: string | undefined
  const instances: ChildApp[] = []

  before(function () {
    if (!hasTool('nginx')) {
      console.log('      SKIPPED: nginx is not installed (apt-get install -y nginx)')
      this.skip()
    }
  })

  afterEach(async () => {
    for (const app of instances.splice(0)) {
      app.kill('SIGKILL')
      await app.exited
    }
    if (nginx !== undefined) {
      const exited = new Promise((resolve) => nginx!.once('exit', resolve))
      if (nginx.exitCode === null) nginx.kill('SIGQUIT')
      await Promise.race([exited, sleep(3_000)])
      if (nginx.exitCode === null) nginx.kill('SIGKILL')
      nginx = undefined
    }
    if (prefix !== undefined) rmSync(prefix, { recursive: true, force: true })
  })

  function startInstance(port: number): ChildApp {
    const app = new ChildApp(join(example, 'app.mjs'), { PORT: String(port), WORK_MS: '20' })
    instances.push(app)
    return app
  }

  it('loses no request while each instance is restarted in turn', async () => {
    const [port, portA, portB] = [await freePort(), await freePort(), await freePort()]
    prefix = mkdtempSync(join(tmpdir(), 'lg-nginx-'))
    for (const dir of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(prefix, dir))
    const conf = readFileSync(join(example, 'nginx.conf'), 'utf8')
      .replaceAll('{{prefix}}', prefix)
      .replaceAll('{{port}}', String(port))
      .replaceAll('{{portA}}', String(portA))
      .replaceAll('{{portB}}', String(portB))
    writeFileSync(join(prefix, 'nginx.conf'), conf)

    let a = startInstance(portA)
    let b = startInstance(portB)
    await a.waitFor('listening')
    await b.waitFor('listening')
    nginx = spawn('nginx', ['-p', prefix, '-c', join(prefix, 'nginx.conf')], { stdio: 'ignore' })
    await waitForPort(port, 5_000)

    const load = autocannon({ url: `http://127.0.0.1:${port}/`, connections: 8, duration: 10, timeout: 5 })
    const summaries: Array<Record<string, unknown>> = []
    const restart = async (old: ChildApp, appPort: number): Promise<ChildApp> => {
      old.kill('SIGTERM')
      summaries.push(await old.waitFor('summary'))
      expect((await old.exited).code).to.equal(0)
      const fresh = startInstance(appPort)
      await fresh.waitFor('listening')
      return fresh
    }
    await sleep(1_500)
    a = await restart(a, portA)
    // Give nginx's fail_timeout (1 s) time to put the restarted instance back in rotation.
    await sleep(2_000)
    b = await restart(b, portB)
    const result = await load

    const failed = result.errors + result.timeouts + result.non2xx
    console.log(
      `      autocannon through nginx: ${result.requests.total} requests, ${result['2xx']} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts; p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms`,
    )
    console.log(`      drain summaries: ${summaries.map((s) => JSON.stringify({ drained: s.drained, rejected: s.rejected, aborted: s.aborted, forced: s.forced, durationMs: s.durationMs })).join(' ')}`)
    expect(summaries).to.have.length(2)
    for (const s of summaries) expect(s).to.include({ aborted: 0, forced: 0 })
    expect(result.requests.total).to.be.above(500)
    expect(failed).to.equal(0)
  })
})
