import { expect } from 'chai'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// Importing @leak-guard/core must not change how the rest of the app behaves: in particular it must not
// load undici, whose import installs undici's Agent as the global dispatcher of Node's fetch.
describe('importing @leak-guard/core', () => {
  const cwd = fileURLToPath(new URL('..', import.meta.url))
  const probe = "typeof globalThis[Symbol.for('undici.globalDispatcher.1')]"
  const env = { ...process.env, NODE_OPTIONS: '' }

  it('leaves the global fetch dispatcher alone (require and import)', () => {
    expect(execFileSync(process.execPath, ['-e', `require('@leak-guard/core'); console.log(${probe})`], { cwd, env }).toString().trim()).to.equal('undefined')
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', `await import('@leak-guard/core'); console.log(${probe})`], { cwd, env }).toString().trim()).to.equal('undefined')
  })

  it('has the HTTP client at @leak-guard/core/client (which does load undici)', () => {
    const out = execFileSync(process.execPath, ['-e', `const c = require('@leak-guard/core/client'); console.log(typeof c.createHttpClient, ${probe})`], { cwd, env }).toString().trim()
    expect(out).to.equal('function object')
  })
})
