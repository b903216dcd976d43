import { createRequire } from 'node:module'
import { expect } from 'chai'
import Koa from 'koa'
import Router from '@koa/router'
import { bodyParser } from '@koa/bodyparser'
import { kitsFor, type Frameworks } from '../../conformance/adapters.js'
import { defineConformance } from '../../conformance/suite.js'

// Matrix cell: the conformance suite on Koa 2 (with @koa/router and @koa/bodyparser, which support
// Koa 2 and 3), resolved from this package's own node_modules.
const require = createRequire(import.meta.url)
const version = (require('koa/package.json') as { version: string }).version

describe('matrix cell: Koa 2', () => {
  it('runs on the pinned major (koa@^2.15)', () => {
    expect(version).to.match(/^2\.(1[5-9]|[2-9]\d)\./)
    expect(require.resolve('koa')).to.include('koa@2.')
    // The router's own `koa` peer is Koa 2 too, not the test package's Koa 3.
    const routerRequire = createRequire(require.resolve('@koa/router'))
    expect((routerRequire('koa/package.json') as { version: string }).version).to.equal(version)
  })
})

// The fixture's types are the default cell's (Koa 3); the runtime modules are Koa 2's.
defineConformance(
  kitsFor(
    { Koa: Koa as unknown as Frameworks['Koa'], Router: Router as unknown as Frameworks['Router'], bodyParser: bodyParser as unknown as Frameworks['bodyParser'] },
    { versions: { koa: version } },
  ),
)
