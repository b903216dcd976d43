import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'

// The consumer test: the packages as users get them (`pnpm pack` tarballs), unpacked into a
// scratch project's node_modules, with their dependencies and the frameworks linked from the
// workspace's node_modules (what the lockfile installed; no network). Then used through `import` and
// `require`, and type-checked with the workspace's TypeScript under moduleResolution nodenext and bundler.

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const names = ['core', 'express', 'koa', 'fastify', 'pg'] as const
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
// The children run plain Node, as a consumer would: without the test runner's `--import tsx`.
const env = { ...process.env, NODE_OPTIONS: (process.env.NODE_OPTIONS ?? '').replace(/--import[= ]tsx/g, '').trim() }

/** Where each dependency of the scratch project comes from in the workspace. */
const links: Record<string, string> = {
  piscina: 'packages/core/node_modules/piscina',
  undici: 'packages/core/node_modules/undici',
  'fastify-plugin': 'packages/fastify/node_modules/fastify-plugin',
  express: 'test/node_modules/express',
  koa: 'test/node_modules/koa',
  fastify: 'test/node_modules/fastify',
  pg: 'test/node_modules/pg',
  '@types/node': 'node_modules/@types/node',
  '@types/express': 'test/node_modules/@types/express',
  '@types/koa': 'test/node_modules/@types/koa',
  '@types/pg': 'test/node_modules/@types/pg',
}

interface Packed {
  name: string
  dependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
}

interface Checked {
  code: number
  output: string
}

describe('the packed packages in a consumer project', function () {
  this.timeout(60_000)
  let scratch: string
  const manifests = new Map<string, Packed>()
  const checks = new Map<string, Promise<Checked>>()

  /**
   * One tsc program in the scratch project. `skipLibCheck` as most apps have it (tsc --init's default):
   * the app's use of the declarations is checked, not the declarations' own dependencies.
   */
  const typecheck = async (config: Record<string, unknown>, files: string[]): Promise<Checked> => {
    const name = `tsconfig.${files.join('-').replace(/\W+/g, '_')}.${String(config.moduleResolution)}.json`
    const compilerOptions = { strict: true, noEmit: true, target: 'es2022', types: ['node'], skipLibCheck: true, esModuleInterop: true, ...config }
    writeFileSync(join(scratch, name), JSON.stringify({ compilerOptions, files }))
    try {
      const { stdout } = await run(process.execPath, [tsc, '-p', name], { cwd: scratch, timeout: 60_000, env })
      return { code: 0, output: stdout }
    } catch (error) {
      const e = error as { code?: number; stdout?: string }
      return { code: e.code ?? 1, output: e.stdout ?? String(error) }
    }
  }

  before(async function () {
    this.timeout(120_000)
    scratch = mkdtempSync(join(tmpdir(), 'leak-guard-consumer-'))
    const tarballs = join(scratch, 'tarballs')
    mkdirSync(tarballs)
    await Promise.all(
      names.map((name) =>
        run('npx', ['-y', 'pnpm@9', 'pack', '--pack-destination', tarballs], { cwd: join(root, 'packages', name), timeout: 90_000, env }),
      ),
    )
    const modules = join(scratch, 'node_modules')
    for (const file of readdirSync(tarballs)) {
      const name = /^leak-guard-(core|express|koa|fastify|pg)-/.exec(file)?.[1]
      if (name === undefined) continue
      const target = join(modules, '@leak-guard', name)
      mkdirSync(target, { recursive: true })
      await run('tar', ['-xzf', join(tarballs, file), '-C', target, '--strip-components=1'])
      manifests.set(name, JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as Packed)
    }
    for (const [name, from] of Object.entries(links)) {
      mkdirSync(dirname(join(modules, name)), { recursive: true })
      symlinkSync(realpathSync(join(root, from)), join(modules, name), 'dir')
    }
    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    for (const file of readdirSync(join(here, 'app'))) copyFileSync(join(here, 'app', file), join(scratch, file))
    writeFileSync(
      join(scratch, 'wrong.ts'),
      "import express from 'express'\nimport { leakGuard } from '@leak-guard/express'\nconst app = express()\napp.use(leakGuard())\napp.get('/', (req, res) => { res.json(req.signl.aborted) })\n",
    )
    // The programs run side by side while the runtime tests go; each test awaits its own.
    const nodenext = { module: 'nodenext', moduleResolution: 'nodenext' }
    checks.set('nodenext', typecheck(nodenext, ['app.ts']))
    checks.set('nodenext-require', typecheck(nodenext, ['app-require.cts']))
    checks.set('bundler', typecheck({ module: 'esnext', moduleResolution: 'bundler' }, ['app.ts']))
    checks.set('wrong', typecheck(nodenext, ['wrong.ts']))
  })

  after(() => {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
  })

  it('packs each package with its ESM and CommonJS builds and no workspace: ranges', () => {
    expect([...manifests.keys()].sort()).to.deep.equal([...names].sort())
    for (const name of names) {
      const dir = join(scratch, 'node_modules', '@leak-guard', name)
      for (const file of ['dist/esm/index.js', 'dist/esm/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/package.json']) {
        expect(existsSync(join(dir, file)), `${name}: ${file}`).to.equal(true)
      }
      expect(existsSync(join(dir, 'src')), `${name}: src/ is not published`).to.equal(false)
      const ranges = { ...manifests.get(name)!.dependencies, ...manifests.get(name)!.peerDependencies }
      for (const [dep, range] of Object.entries(ranges)) expect(range, `${name} → ${dep}`).to.not.match(/^workspace:/)
    }
  })

  for (const [kind, file] of [
    ['import', 'esm.mjs'],
    ['require', 'cjs.cjs'],
  ] as const) {
    it(`serves a request on Express, Koa and Fastify through \`${kind}\` with the request's signal in scope`, async () => {
      const { stdout } = await run(process.execPath, [file], { cwd: scratch, timeout: 30_000, env })
      const result = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>
      expect(result).to.deep.equal({
        kind: kind === 'import' ? 'esm' : 'cjs',
        guard: true,
        errorBrand: true,
        pg: true,
        express: { signal: true, current: true },
        koa: { signal: true, current: true },
        fastify: { signal: true, current: true },
      })
    })
  }

  for (const [label, key] of [
    ['moduleResolution nodenext through import', 'nodenext'],
    ['moduleResolution nodenext through require (.cts)', 'nodenext-require'],
    ['moduleResolution bundler', 'bundler'],
  ] as const) {
    it(`type-checks an app using req.signal, ctx.signal, request.scope and guardPool() with ${label}`, async () => {
      const result = await checks.get(key)!
      expect(result.output).to.equal('')
      expect(result.code).to.equal(0)
    })
  }

  it('fails the type-check when the app reads a property the packages do not declare', async () => {
    const result = await checks.get('wrong')!
    expect(result.code).to.not.equal(0)
    expect(result.output).to.match(/TS2551|TS2339/)
  })
})
