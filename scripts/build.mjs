#!/usr/bin/env node
// Builds every package to dist/esm and dist/cjs with tsc (core first: the adapters type-check against
// its declarations). `--check` type-checks everything, tests and examples included, without emitting.
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
const packages = ['core', 'express', 'koa', 'fastify', 'pg', 'bullmq']
const check = process.argv.includes('--check')

function run(args) {
  const result = spawnSync(process.execPath, [tsc, ...args], { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) process.exit(result.status ?? 1)
}

for (const name of packages) {
  const dir = join(root, 'packages', name)
  if (check) {
    run(['-p', join(dir, 'tsconfig.json'), '--noEmit'])
    continue
  }
  if (process.argv.includes('--clean')) rmSync(join(dir, 'dist'), { recursive: true, force: true })
  run(['-p', join(dir, 'tsconfig.json')])
  run(['-p', join(dir, 'tsconfig.cjs.json')])
  for (const [sub, type] of [['esm', 'module'], ['cjs', 'commonjs']]) {
    mkdirSync(join(dir, 'dist', sub), { recursive: true })
    writeFileSync(join(dir, 'dist', sub, 'package.json'), JSON.stringify({ type }) + '\n')
  }
}
if (check) {
  for (const project of ['test/tsconfig.json', 'examples/tsconfig.json', 'bench/tsconfig.json']) {
    if (existsSync(join(root, project))) run(['-p', join(root, project), '--noEmit'])
  }
}
