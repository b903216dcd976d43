import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'

// Proof that the conformance suite catches a regression: the suite runs, in a child mocha process,
// against an Express adapter that detects disconnects through `req` 'close' (broken-cell.spec.ts), and
// must report failures — the POST-with-a-body deadline case among them, since `req` 'close' fires once
// the body was read and the broken adapter then aborts a live request as "client closed".

const testDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const mocha = join(testDir, 'node_modules', 'mocha', 'bin', 'mocha.js')

interface MochaJson {
  stats: { passes: number; failures: number }
  failures: Array<{ fullTitle: string }>
}

describe('the conformance suite against a broken adapter', () => {
  let scratch: string | undefined
  afterEach(() => {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
    scratch = undefined
  })

  it('fails on the Express cell whose adapter watches req "close" instead of the response', async function () {
    this.timeout(90_000)
    scratch = mkdtempSync(join(tmpdir(), 'leak-guard-broken-'))
    const output = join(scratch, 'report.json')
    const child = spawn(process.execPath, [mocha, '--reporter', 'json', '--reporter-option', `output=${output}`, 'matrix/broken/broken-cell.spec.ts'], {
      cwd: testDir,
      stdio: 'ignore',
      env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import tsx`.trim(), LG_SPECS: '1', LG_SUMMARY_FILE: '' },
    })
    const [code] = (await once(child, 'exit')) as [number | null]
    const report = JSON.parse(readFileSync(output, 'utf8')) as MochaJson
    expect(code).to.not.equal(0)
    expect(report.stats.passes).to.be.above(0) // the suite ran: the options and happy-path tests still pass
    expect(report.stats.failures).to.be.above(0)
    const failed = report.failures.map((f) => f.fullTitle)
    expect(failed.some((title) => title.includes('answers POST with 503') && title.includes('LG_ERR_TIMEOUT'))).to.equal(true, failed.join('\n'))
  })
})
