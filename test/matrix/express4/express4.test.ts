import { createRequire } from 'node:module'
import { expect } from 'chai'
import express from 'express'
import { kitsFor, type Frameworks } from '../../conformance/adapters.js'
import { defineConformance } from '../../conformance/suite.js'

// Matrix cell: the conformance suite on Express 4, resolved from this package's own node_modules.
const version = (createRequire(import.meta.url)('express/package.json') as { version: string }).version

describe('matrix cell: Express 4', () => {
  it('runs on the pinned major (express@^4.21)', () => {
    expect(version).to.match(/^4\.(2[1-9]|[3-9]\d)\./)
    expect(createRequire(import.meta.url).resolve('express')).to.include('express@4.')
  })
})

// The fixture's types are the default cell's (Express 5); the runtime module is Express 4.
defineConformance(kitsFor({ express: express as unknown as Frameworks['express'] }, { versions: { express: version } }))
