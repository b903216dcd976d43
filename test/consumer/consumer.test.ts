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

  it('ships exactly package.json, README.md, LICENSE and dist (JS, declarations, source maps that carry their sources)', () => {
    const walk = (dir: string, prefix = ''): string[] =>
      readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(dir, `${prefix}${e.name}/`) : [`${prefix}${e.name}`]))
    const allowed = /^(package\.json|README\.md|LICENSE|dist\/(esm|cjs)\/package\.json|dist\/(esm|cjs)\/[\w/-]+\.(js|d\.ts|js\.map))$/
    for (const name of names) {
      const dir = join(scratch, 'node_modules', '@leak-guard', name)
      const files = walk(dir)
      expect(files.filter((f) => !allowed.test(f)), `${name}: unexpected files in the tarball`).to.deep.equal([])
      for (const file of ['package.json', 'README.md', 'LICENSE']) expect(files, name).to.include(file)
      expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).to.match(/^MIT License/)
      for (const map of files.filter((f) => f.endsWith('.js.map'))) {
        const json = JSON.parse(readFileSync(join(dir, map), 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null> }
        expect(json.sourcesContent?.length, `${name}/${map} carries its sources`).to.equal(json.sources.length)
        expect(json.sourcesContent!.every((c) => typeof c === 'string' && c.length > 0), `${name}/${map}`).to.equal(true)
      }
      for (const decl of files.filter((f) => f.endsWith('.d.ts'))) {
        expect(readFileSync(join(dir, decl), 'utf8'), `${name}/${decl} points at no missing map`).to.not.include('sourceMappingURL')
      }
    }
  })

  it('publishes license, repository (with its directory), homepage and bugs, and a README whose links resolve on the registry page', () => {
    const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { repository: { url: string }; bugs: { url: string } }
    const repo = rootManifest.repository.url.replace(/^git\+/, '').replace(/\.git$/, '')
    expect(repo).to.match(/^https:\/\/github\.com\/[\w-]+\/[\w-]+$/)
    for (const name of names) {
      const dir = join(scratch, 'node_modules', '@leak-guard', name)
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>
      expect(manifest.license).to.equal('MIT')
      expect(manifest.repository).to.deep.equal({ type: 'git', url: rootManifest.repository.url, directory: `packages/${name}` })
      expect(manifest.homepage).to.equal(`${repo}/tree/main/packages/${name}#readme`)
      expect(manifest.bugs).to.deep.equal(rootManifest.bugs)
      const readme = readFileSync(join(dir, 'README.md'), 'utf8')
      const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!)
      expect(targets.filter((t) => !/^(https:\/\/|#)/.test(t)), `${name}: relative links in README.md`).to.deep.equal([])
      for (const target of targets.filter((t) => t.startsWith(`${repo}/`))) {
        // A link into this repository names a file or folder that exists in it.
        const path = target.slice(repo.length + 1).replace(/^(blob|tree)\/main\//, '').replace(/#.*$/, '')
        expect(existsSync(join(root, path)), `${name}: ${target}`).to.equal(true)
      }
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

  describe('type matrix: tsc --strict, NodeNext, no skipLibCheck, ESM and CommonJS consumers', () => {
    // Each @types/node major gets a project of its own (with and without the optional prom-client),
    // whose node_modules links the packed packages and the frameworks; `typeRoots` makes every
    // `/// <reference types="node" />` of a dependency resolve to that project's @types/node, so one
    // major is loaded per program. Each project is type-checked by TypeScript 5.9 and 7.
    const compilers = [
      ['TypeScript 5.9', join(root, 'node_modules', 'typescript', 'bin', 'tsc')],
      ['TypeScript 7', join(root, 'test', 'node_modules', 'typescript-7', 'bin', 'tsc')],
    ] as const
    const majors = [20, 22, 24, 26] as const
    const projects = new Map<string, Promise<string>>()
    /** Runs at most two tsc at a time: they are CPU-bound and the machine is shared. */
    let slots = 2
    const waiting: Array<() => void> = []
    const limited = async <T>(fn: () => Promise<T>): Promise<T> => {
      if (slots === 0) await new Promise<void>((resolve) => waiting.push(resolve))
      else slots--
      try {
        return await fn()
      } finally {
        const next = waiting.shift()
        if (next !== undefined) next()
        else slots++
      }
    }

    type Mode = 'esm' | 'cjs'
    const project = (major: number, prom: boolean, mode: Mode): string => {
      const dir = join(scratch, `types-node-${major}${prom ? '-prom-client' : ''}-${mode}`)
      if (existsSync(dir)) return dir
      const modules = join(dir, 'node_modules')
      mkdirSync(join(modules, '@leak-guard'), { recursive: true })
      mkdirSync(join(modules, '@types'), { recursive: true })
      for (const name of names) symlinkSync(join(scratch, 'node_modules', '@leak-guard', name), join(modules, '@leak-guard', name), 'dir')
      const deps: Record<string, string> = {
        express: links.express!,
        koa: links.koa!,
        fastify: links.fastify!,
        '@types/express': links['@types/express']!,
        '@types/koa': links['@types/koa']!,
        pg: links.pg!,
        '@types/pg': links['@types/pg']!,
        '@types/node': `test/node_modules/types-node-${major}`,
        ...(prom ? { 'prom-client': 'test/node_modules/prom-client' } : {}),
      }
      for (const [name, from] of Object.entries(deps)) symlinkSync(realpathSync(join(root, from)), join(modules, name), 'dir')
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
      // One module system per program, as an app has: an ESM and a CommonJS program that both load the
      // adapters' augmentations would see each declared twice (once per build) and report TS2717.
      const files = mode === 'cjs' ? ['app-require.cts'] : ['app.ts', 'strict-pool.ts', ...(prom ? ['strict-metrics.ts'] : [])]
      for (const file of files) copyFileSync(join(here, 'app', file), join(dir, file))
      const compilerOptions = { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], typeRoots: ['./node_modules/@types'], skipLibCheck: false }
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files }))
      return dir
    }

    const check = (compiler: string, major: number, prom: boolean, mode: Mode): Promise<string> => {
      const key = `${compiler} ${major} ${prom} ${mode}`
      let result = projects.get(key)
      if (result === undefined) {
        const dir = project(major, prom, mode)
        result = limited(async () => {
          try {
            const { stdout } = await run(process.execPath, [compiler, '-p', 'tsconfig.json'], { cwd: dir, timeout: 120_000, env })
            return stdout
          } catch (error) {
            const e = error as { stdout?: string }
            return e.stdout || String(error)
          }
        })
        projects.set(key, result)
      }
      return result
    }

    it('has @types/node 20, 22, 24 and 26 and TypeScript 5.9 and 7 installed for it', () => {
      for (const major of majors) {
        const version = (JSON.parse(readFileSync(join(root, 'test', 'node_modules', `types-node-${major}`, 'package.json'), 'utf8')) as { version: string }).version
        expect(version.split('.')[0]).to.equal(String(major))
      }
      const ts7 = (JSON.parse(readFileSync(join(root, 'test', 'node_modules', 'typescript-7', 'package.json'), 'utf8')) as { version: string }).version
      expect(ts7).to.match(/^7\./)
    })

    // ESM consumers with and without prom-client; CommonJS consumers without it (the case where a
    // declaration importing the optional peer would fail; the .cts program reads the CJS declarations).
    const cells = majors.flatMap((major) => [
      { major, prom: false, mode: 'esm' as const },
      { major, prom: true, mode: 'esm' as const },
      { major, prom: false, mode: 'cjs' as const },
    ])
    for (const [label, compiler] of compilers) {
      for (const { major, prom, mode } of cells) {
        it(`${label}, @types/node ${major}, ${mode === 'esm' ? 'ESM' : 'CommonJS'} consumer ${prom ? 'with' : 'without'} prom-client: no errors`, async function () {
          this.timeout(300_000)
          // Start every program of this compiler at once (two run at a time), then wait for this one.
          for (const c of cells) void check(compiler, c.major, c.prom, c.mode)
          expect(await check(compiler, major, prom, mode)).to.equal('')
        })
      }
    }
  })

  it('fails the type-check when the app reads a property the packages do not declare', async () => {
    const result = await checks.get('wrong')!
    expect(result.code).to.not.equal(0)
    expect(result.output).to.match(/TS2551|TS2339/)
  })
})
