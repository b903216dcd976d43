import { readFileSync } from 'node:fs'
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

describe('supported versions', () => {
  for (const { adapter, framework, cell } of cells) {
    it(`@leak-guard/${adapter} peers on exactly the ${framework} ranges the matrix tests, and the README lists them`, () => {
      const older = json(`test/matrix/${cell}/package.json`).devDependencies![framework]!
      const current = json('test/package.json').devDependencies![framework]!
      expect(current).to.match(/^\d+$/)
      const range = `${older} || ^${current}.0.0`
      expect(json(`packages/${adapter}/package.json`).peerDependencies![framework]).to.equal(range)
      const readme = readFileSync(join(root, 'README.md'), 'utf8')
      const section = readme.slice(readme.indexOf('## Supported versions'), readme.indexOf('\n## ', readme.indexOf('## Supported versions') + 5))
      expect(section).to.include(`\`${range.replace(/\|/g, '\\|')}\``)
    })
  }
})
