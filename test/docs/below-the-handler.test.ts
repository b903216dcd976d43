import { expect } from 'chai'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import { leakGuard, leakGuardErrorHandler } from '@leak-guard/express'
import { loadProfile, recordView } from '../../examples/quickstart/below-the-handler.js'
import { rawRequest, rawSocket } from '../helpers/http.js'

// The core README's snippet, run for real: an upstream that never answers, and a client that leaves.
describe('core README: work below the handler', () => {
  let upstream: Server
  let app: Server
  const seen: Array<{ path: string; closedEarly: boolean }> = []

  beforeEach(async () => {
    seen.length = 0
    upstream = createServer((req: IncomingMessage, res) => {
      const entry = { path: req.url ?? '', closedEarly: false }
      seen.push(entry)
      res.on('close', () => {
        if (!res.writableFinished) entry.closedEarly = true
      })
      // never answers: the caller's signal is the only way out
    })
    upstream.listen(0, '127.0.0.1')
    await once(upstream, 'listening')
    const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    process.env.PROFILE_SERVICE = base
    process.env.AUDIT_SERVICE = base
    const api = express()
    api.use(leakGuard({ timeout: 5_000 }))
    api.get('/profiles/:id', async (req, res) => {
      recordView(req.params.id)
      res.json(await loadProfile(req.params.id))
    })
    api.use(leakGuardErrorHandler())
    app = createServer(api).listen(0, '127.0.0.1')
    await once(app, 'listening')
  })

  afterEach(async () => {
    app.closeAllConnections()
    upstream.closeAllConnections()
    await Promise.all([new Promise((r) => app.close(r)), new Promise((r) => upstream.close(r))])
  })

  it('cancels the upstream call and the spawned background call when the client leaves', async () => {
    const socket = await rawSocket((app.address() as AddressInfo).port, rawRequest('GET', '/profiles/7', 'x'))
    for (let i = 0; i < 50 && seen.length < 2; i++) await sleep(10)
    expect(seen.map((s) => s.path).sort()).to.deep.equal(['/profiles/7', '/views/7'])
    socket.destroy()
    await sleep(100)
    expect(seen.every((s) => s.closedEarly)).to.equal(true)
  })
})
