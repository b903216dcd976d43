#!/usr/bin/env node
// Regenerates test/connect/gen/budget_pb.ts from proto/budget.proto with @bufbuild/buf and
// @bufbuild/protoc-gen-es from the test package. The generated file is committed; run this after
// changing the .proto.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const bin = join(here, '..', 'node_modules', '.bin')
const result = spawnSync(join(bin, 'buf'), ['generate'], {
  cwd: here,
  stdio: 'inherit',
  env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
})
process.exit(result.status ?? 1)
