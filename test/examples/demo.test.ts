import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'

const runFile = fileURLToPath(new URL('../../examples/demo/run.mjs', import.meta.url))

interface SideResults {
  uses: Record<string, string>
  slowClients: { held: number; attackers: number; answered: number; wellBehaved: number }
  clientLeft: { completedAfterLeft: number; workStarted: number; stillRunning: number; lateWorkDetected: number | undefined; lateWorkByKind?: Record<string, number> }
  poolAndCpu: { pool?: { socketsPeak: number; limit?: number }; cpu?: { shed: number; scrapes: number } }
  callerGaveUp: { completedAfterCallerGaveUp: number; workStarted: number; stillRunning: number }
  shutdown: { killedAt?: number; closeMs?: number; failed: number; requests: number }
}
interface Report {
  problems: string[]
  unguardedLeaks: string[]
  childrenLeft: number
  durationMs: number
  frameworks: Record<string, { sides: { unguarded: SideResults; guarded: SideResults } }>
}

function runDemo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // The demo imports the built packages; the test runner's tsx loader is not needed there.
    const env = { ...process.env, NODE_OPTIONS: '' }
    const child = spawn(process.execPath, [runFile, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
    child.once('error', reject)
    child.once('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('the incident replay demo (--short)', function () {
  this.timeout(90_000)
  let result: { code: number | null; stdout: string; stderr: string }
  let report: Report

  before(async () => {
    result = await runDemo(['--short', '--json'])
    report = JSON.parse(result.stdout) as Report
  })

  for (const framework of ['express', 'koa', 'fastify']) {
    describe(framework, () => {
      it('shows the leaks of the unguarded side', () => {
        const u = report.frameworks[framework]!.sides.unguarded
        expect(u.slowClients.held, 'slow-client sockets held').to.equal(u.slowClients.attackers)
        expect(u.slowClients.answered, 'well-behaved clients answered').to.equal(0)
        expect(u.clientLeft.completedAfterLeft, 'upstream work completed after the client left').to.be.greaterThan(0)
        expect(u.poolAndCpu.pool!.socketsPeak, 'upstream sockets').to.be.greaterThan(report.frameworks[framework]!.sides.guarded.poolAndCpu.pool!.limit!)
        expect(u.poolAndCpu.cpu!.shed).to.equal(0)
        expect(u.callerGaveUp.completedAfterCallerGaveUp, 'downstream work completed after the caller gave up').to.be.greaterThan(0)
        expect(u.shutdown.killedAt, 'unguarded shutdown hangs until killed').to.be.a('number')
      })

      it('shows no leaked work on the guarded side', () => {
        const g = report.frameworks[framework]!.sides.guarded
        expect(g.uses).to.include({ server: 'hardenServer', outgoing: 'createHttpClient', cpu: 'createThreadPool' })
        expect(g.slowClients.held, 'slow-client sockets held').to.equal(0)
        expect(g.slowClients.answered, 'well-behaved clients answered').to.be.greaterThan(0)
        expect(g.clientLeft.completedAfterLeft, 'upstream work completed after the client left').to.equal(0)
        expect(g.clientLeft.stillRunning, 'upstream work still running').to.equal(0)
        expect(g.clientLeft.lateWorkByKind, 'late work reported by the guard').to.deep.equal({})
        expect(g.poolAndCpu.pool!.socketsPeak, 'upstream sockets').to.be.at.most(g.poolAndCpu.pool!.limit!)
        expect(g.poolAndCpu.cpu!.shed, '/metrics scrapes shed with 503').to.be.greaterThan(0)
        expect(g.callerGaveUp.workStarted, 'downstream calls made').to.be.greaterThan(0)
        expect(g.callerGaveUp.completedAfterCallerGaveUp, 'downstream work completed after the caller gave up').to.equal(0)
        expect(g.callerGaveUp.stillRunning, 'downstream work still running').to.equal(0)
        expect(g.shutdown.killedAt, 'guarded shutdown finished by itself').to.equal(undefined)
        expect(g.shutdown.failed, 'requests failed during shutdown').to.equal(0)
      })
    })
  }

  it('exits 0 with no guarded problems and leaves no child process', () => {
    expect(report.problems).to.deep.equal([])
    expect(result.code).to.equal(0)
    expect(report.childrenLeft).to.equal(0)
    // About 25 s on an idle 2-core machine; the bound leaves room for a loaded one.
    expect(report.durationMs).to.be.below(60_000)
  })
})
