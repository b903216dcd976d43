import { expect } from 'chai'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import * as core from '@leak-guard/core'
import { errorCodes, LeakGuardError, TimeoutError, ClientClosedError, InvalidOptionError } from '@leak-guard/core'

const readme = readFileSync(new URL('../../packages/core/README.md', import.meta.url), 'utf8')

function readmeTable(): Map<string, number> {
  const section = readme.slice(readme.indexOf('## Errors'))
  const rows = new Map<string, number>()
  for (const line of section.split('\n')) {
    const match = /^\|\s*`(LG_ERR_[A-Z_]+)`\s*\|\s*(\d{3})\s*\|/.exec(line)
    if (match) {
      expect(rows.has(match[1]!), `${match[1]} is listed twice`).to.equal(false)
      rows.set(match[1]!, Number(match[2]))
    }
  }
  return rows
}

describe('errors', () => {
  describe('the README error table', () => {
    it('lists exactly the codes core defines, with the same statuses', () => {
      const table = readmeTable()
      const codes = new Map(Object.entries(errorCodes).map(([code, entry]) => [code, entry.status]))
      expect([...table.keys()].sort()).to.deep.equal([...codes.keys()].sort())
      for (const [code, status] of codes) expect(table.get(code), code).to.equal(status)
    })
  })

  describe('every error class', () => {
    it('carries code, statusCode, status, expose and its status from the table', () => {
      const error = new TimeoutError(100)
      expect(error.code).to.equal('LG_ERR_TIMEOUT')
      expect(error.statusCode).to.equal(503)
      expect(error.status).to.equal(503)
      expect(error.expose).to.equal(true)
      expect(new ClientClosedError().expose).to.equal(false)
    })

    it('lets a framework write `status` back (Koa does)', () => {
      const error = new TimeoutError(100) as TimeoutError & { status: number }
      error.status = 504
      expect(error.statusCode).to.equal(504)
    })

    it('is recognised by instanceof across the ESM and CommonJS copies of core', async () => {
      const require = createRequire(import.meta.url)
      const cjs = require('../../packages/core/dist/cjs/index.js') as typeof core
      const esm = (await import('../../packages/core/dist/esm/index.js' as string)) as typeof core
      expect(cjs.TimeoutError).to.not.equal(esm.TimeoutError)
      expect(new esm.TimeoutError(5)).to.be.instanceOf(cjs.TimeoutError)
      expect(new cjs.ShutdownError()).to.be.instanceOf(esm.LeakGuardError)
      const fromCjs = new cjs.TimeoutError(5)
      expect(fromCjs).to.be.instanceOf(TimeoutError)
      expect(fromCjs).to.be.instanceOf(LeakGuardError)
      expect(fromCjs).to.not.be.instanceOf(ClientClosedError)
      expect(new TimeoutError(5)).to.be.instanceOf(cjs.LeakGuardError)
      expect(new InvalidOptionError('x', 'bad')).to.be.instanceOf(cjs.InvalidOptionError)
      expect({ code: 'LG_ERR_TIMEOUT' }).to.not.be.instanceOf(TimeoutError)
    })

    it('shares one AsyncLocalStorage between the ESM and CommonJS copies', async () => {
      const require = createRequire(import.meta.url)
      const cjs = require('../../packages/core/dist/cjs/index.js') as typeof core
      const esm = (await import('../../packages/core/dist/esm/index.js' as string)) as typeof core
      expect(esm.currentScope).to.not.equal(cjs.currentScope)
      const guard = esm.createGuard({ timeout: false })
      const { EventEmitter } = await import('node:events')
      const res = Object.assign(new EventEmitter(), { headersSent: false, writableFinished: true, writableEnded: true })
      const scope = guard.begin({ method: 'GET', url: '/' } as never, res as never)
      guard.enter(scope, () => {
        expect(cjs.currentScope()).to.equal(scope)
        expect(esm.currentScope()).to.equal(scope)
      })
      res.emit('close')
      expect(guard.size).to.equal(0)
    })
  })
})
