import { expect } from 'chai'
import { spawn, spawnSync } from 'node:child_process'
import http from 'node:http'
import { ChildApp, sleep } from './helpers.js'

// Incident 1 replayed with a real attacker: slowhttptest in slowloris mode (-H) opens several hundred
// connections and trickles one header line per second on each. A hardened server must close them
// within headersTimeout + 1 s while a well-behaved client keeps getting answers; an unhardened one
// holds them all. Install the tool with `apt-get install -y slowhttptest` (Debian package).
const CONNECTIONS = 300
const DURATION_S = 6
const HEADERS_TIMEOUT = 2000

function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0
}

interface Attack {
  done: Promise<void>
  stop(): void
}

function slowloris(port: number): Attack {
  const child = spawn(
    'slowhttptest',
    ['-H', '-c', String(CONNECTIONS), '-r', String(CONNECTIONS), '-i', '1', '-x', '10', '-p', '3', '-l', String(DURATION_S), '-u', `http://127.0.0.1:${port}/`],
    { stdio: 'ignore' },
  )
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    done,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}

/** A well-behaved keep-alive client asking every 20 ms until `until`; returns latencies and failures. */
async function wellBehaved(port: number, until: number): Promise<{ latencies: number[]; failures: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const latencies: number[] = []
  let failures = 0
  try {
    while (performance.now() < until) {
      const start = performance.now()
      try {
        await new Promise<void>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 2_000 }, (res) => {
            res.resume()
            res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))))
          })
          req.once('timeout', () => req.destroy(new Error('timeout')))
          req.once('error', reject)
        })
        latencies.push(performance.now() - start)
      } catch {
        failures++
      }
      await sleep(20)
    }
  } finally {
    agent.destroy()
  }
  return { latencies, failures }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

describe('slowhttptest (slowloris) against the example server', function () {
  this.timeout(40_000)
  let app: ChildApp | undefined
  let attack: Attack | undefined

  before(function () {
    if (!hasTool('slowhttptest')) {
      console.log('      SKIPPED: slowhttptest is not installed (apt-get install -y slowhttptest)')
      this.skip()
    }
  })

  afterEach(async () => {
    attack?.stop()
    await attack?.done
    attack = undefined
    if (app !== undefined) {
      app.kill('SIGKILL')
      await app.exited
      app = undefined
    }
  })

  it('hardened: closes trickling connections within headersTimeout + 1 s and keeps answering a normal client', async () => {
    app = new ChildApp('slow-server.mjs', { LG_HARDEN: '1', LG_HEADERS_TIMEOUT: String(HEADERS_TIMEOUT) })
    const port = (await app.waitFor('listening')).port as number
    attack = slowloris(port)
    const client = wellBehaved(port, performance.now() + (DURATION_S - 1) * 1000)
    await attack.done
    const { latencies, failures } = await client
    app.kill('SIGTERM')
    const report = await app.waitFor('report')
    const peak = Math.max(...app.events.filter((e) => e.event === 'sockets').map((e) => e.open as number))
    const p99 = percentile(latencies, 99)
    console.log(
      `      hardened (headersTimeout ${HEADERS_TIMEOUT} ms): ${report.unservedClosed} trickling connections closed, longest held ${report.maxUnservedLifetimeMs} ms (median ${report.medianUnservedLifetimeMs}); peak open sockets ${peak}; well-behaved client ${latencies.length} requests, ${failures} failed, p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
    )
    expect(report.unservedClosed as number).to.be.at.least(CONNECTIONS / 2)
    expect(report.maxUnservedLifetimeMs as number).to.be.at.most(HEADERS_TIMEOUT + 1000)
    expect(failures).to.equal(0)
    expect(latencies.length).to.be.at.least(50)
    expect(p99).to.be.below(500)
  })

  it('unhardened (Node defaults): records how many sockets the trickling clients hold', async () => {
    app = new ChildApp('slow-server.mjs', { LG_HARDEN: '0' })
    const port = (await app.waitFor('listening')).port as number
    attack = slowloris(port)
    // Count while the attack still runs: once slowhttptest exits its sockets close from its side.
    await sleep((DURATION_S - 1) * 1000)
    app.kill('SIGTERM')
    const report = await app.waitFor('report')
    const peak = Math.max(...app.events.filter((e) => e.event === 'sockets').map((e) => e.open as number))
    console.log(`      unhardened: ${report.open} sockets held by trickling clients after ${DURATION_S - 1} s (peak ${peak}); ${report.unservedClosed} closed by the server`)
    // Node's defaults (headersTimeout 60 s, checked every 30 s) let every trickling socket stay.
    expect(report.open as number).to.be.at.least(CONNECTIONS * 0.8)
  })
})
