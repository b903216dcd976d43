import { expect } from 'chai'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as core from '@leak-guard/core'
import * as adapter from '@leak-guard/core/adapter'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const readme = readFileSync(join(root, 'packages', 'core', 'README.md'), 'utf8')

function files(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith(suffix))
    .map((f) => join(dir, f))
}

// Adapter plumbing that core's main entry exported until CHANGELOG's "Unreleased" entry: now at
// '@leak-guard/core/adapter' only.
const moved = [
  'bindRequestEvents',
  'answerAbortedResponse',
  'neutraliseLateWrites',
  'validateRouteTimeout',
  'readinessAnswer',
  'takeSnapshot',
  'resolveHardenOptions',
  'formatLeak',
  'logLeak',
  'kExternalClose',
  'kCloseServer',
]

describe('entry points', () => {
  it("core's main entry exports only what packages/core/README.md documents for users", () => {
    const names = Object.keys(core).sort()
    for (const name of moved) expect(names, `${name} is adapter plumbing`).to.not.include(name)
    const undocumented = names.filter((name) => !readme.includes(`\`${name}`))
    expect(undocumented, 'exported by @leak-guard/core but not in its README').to.deep.equal([])
  })

  it('the CHANGELOG lists every name that moved from the main entry to /adapter', () => {
    const changelog = readFileSync(join(root, 'CHANGELOG.md'), 'utf8')
    for (const name of moved) expect(changelog, name).to.include(`\`${name}\``)
  })

  it('/adapter keeps every name it exported before (integrations build on it), and the moved ones', () => {
    const before = ['bindRequestEvents', 'currentScope', 'trackWork', 'answerAbortedResponse', 'neutraliseLateWrites', 'validateRouteTimeout', 'readinessAnswer', 'kExternalClose', 'kCloseServer', 'takeSnapshot', 'logLeak', 'invalid', 'checkKeys', 'integer', 'integerOrFalse', 'boolean']
    for (const name of [...before, ...moved]) expect(adapter, name).to.have.property(name)
    // The answer primitives, the shutdown hook and the guard brand the adapters use now.
    for (const name of ['needsAnswer', 'writeRaw', 'cut', 'abortAnswer', 'frameworkCloses', 'isGuard', 'subscribeAbort']) expect(adapter, name).to.have.property(name)
    expect(adapter.answerAbortedResponse).to.equal(adapter.writeRaw)
  })

  it('isGuard() recognises a guard by its brand, not by its shape', () => {
    const guard = core.createGuard({ timeout: false })
    expect(adapter.isGuard(guard)).to.equal(true)
    const lookalike = { abortAll() {}, beginShutdown() {}, register() {}, reportLeak() {}, snapshot() {}, onScopeEnd() {} }
    expect(adapter.isGuard(lookalike)).to.equal(false)
    expect(() => core.createShutdown(createServer(), { guard: lookalike as never })).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    expect(() => core.createDispatcher({ concurrency: 1, guard: lookalike as never })).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    expect(() => core.createDebugHandler(lookalike as never)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    guard.dispose()
  })

  it('the built declarations (.d.ts) of every package contain no @internal member', () => {
    const declarations = readdirSync(join(root, 'packages')).flatMap((name) => files(join(root, 'packages', name, 'dist'), '.d.ts'))
    expect(declarations.length).to.be.above(20)
    const leaking = declarations.filter((file) => readFileSync(file, 'utf8').includes('@internal'))
    expect(leaking).to.deep.equal([])
  })

  it("core's modules import each other without cycles, type-only imports included", () => {
    const src = join(root, 'packages', 'core', 'src')
    const graph = new Map<string, string[]>()
    for (const file of files(src, '.ts')) {
      const text = readFileSync(file, 'utf8')
      const deps = [...text.matchAll(/(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\s+from\s+)?['"](\.[^'"]+)['"]/g)].map((m) =>
        normalize(join(dirname(file), m[1]!)).replace(/\.js$/, '.ts'),
      )
      graph.set(normalize(file), deps)
    }
    const cycles: string[] = []
    const state = new Map<string, 'open' | 'done'>()
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done') return
      if (state.get(file) === 'open') {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => f.slice(src.length + 1)).join(' → '))
        return
      }
      state.set(file, 'open')
      for (const dep of graph.get(file) ?? []) if (graph.has(dep)) visit(dep, [...path, file])
      state.set(file, 'done')
    }
    for (const file of graph.keys()) visit(file, [])
    expect(cycles).to.deep.equal([])
  })
})
