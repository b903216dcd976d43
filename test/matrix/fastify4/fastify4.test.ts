import { createRequire } from 'node:module'
import { expect } from 'chai'
import Fastify from 'fastify'
import { kitsFor, type Frameworks } from '../../conformance/adapters.js'
import { defineConformance } from '../../conformance/suite.js'

// Matrix cell: the conformance suite on Fastify 4, resolved from this package's own node_modules.
const version = (createRequire(import.meta.url)('fastify/package.json') as { version: string }).version

describe('matrix cell: Fastify 4', () => {
  it('runs on the pinned major (fastify@^4.28)', () => {
    expect(version).to.match(/^4\.(2[89]|[3-9]\d)\./)
    expect(createRequire(import.meta.url).resolve('fastify')).to.include('fastify@4.')
  })
})

// The fixture's types are the default cell's (Fastify 5); the runtime module is Fastify 4.
defineConformance(kitsFor({ Fastify: Fastify as unknown as Frameworks['Fastify'] }, { versions: { fastify: version } }))
