import { expect } from 'chai'
import * as http from 'node:http'
import * as https from 'node:https'
import { performance } from 'node:perf_hooks'
import express from 'express'
import { createGuard } from '@leak-guard/core'
import { createAgent, type BoundedAgent } from '@leak-guard/core/client'
import { leakGuard } from '@leak-guard/express'
import { Upstream, delay, listen, waitFor } from './upstream.js'

function get(url: string, agent: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (body += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

describe('createAgent()', function () {
  this.timeout(10_000)

  let upstream: Upstream
  let agent: BoundedAgent | undefined
  let inbound: http.Server | undefined

  beforeEach(async () => {
    upstream = await new Upstream().listen()
  })

  afterEach(async () => {
    agent?.destroy()
    agent = undefined
    if (inbound !== undefined) {
      inbound.closeAllConnections()
      await new Promise((resolve) => inbound!.close(resolve))
      inbound = undefined
    }
    await upstream.close()
  })

  it('throws LG_ERR_INVALID_OPTION for invalid options', () => {
    const cases: unknown[] = [
      { maxSockets: 0 },
      { maxFreeSockets: -1 },
      { maxQueue: 1.5 },
      { timeout: 0 },
      { scheduling: 'random' },
      { protocol: 'ftp:' },
      { scope: 'yes' },
      { guard: 1 },
      { keepAlive: true },
    ]
    for (const options of cases) {
      expect(() => createAgent(options as never), JSON.stringify(options))
        .to.throw()
        .with.property('code', 'LG_ERR_INVALID_OPTION')
    }
    const secure = createAgent({ protocol: 'https:' })
    expect(secure).to.be.instanceOf(https.Agent)
    secure.destroy()
  })

  it('keeps at most maxSockets sockets and refuses requests beyond maxQueue with LG_ERR_CLIENT_QUEUE_FULL', async () => {
    upstream.handler = (_req, res) => {
      setTimeout(() => res.end('ok'), 100)
    }
    agent = createAgent({ maxSockets: 2, maxQueue: 3 })
    const a = agent
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, () => get(upstream.url, a)))
    expect(outcomes.filter((o) => o.status === 'fulfilled')).to.have.length(5)
    for (const o of outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected')) {
      expect(o.reason).to.have.property('code', 'LG_ERR_CLIENT_QUEUE_FULL')
    }
    expect(upstream.maxSockets).to.equal(2)
    expect(upstream.requests).to.equal(5)
    await waitFor(() => a.stats()[upstream.url]?.busy === 0)
    expect(a.stats()).to.deep.equal({ [upstream.url]: { open: 2, busy: 0, queued: 0, aborted: 0, rejected: 5 } })
  })

  it('stats() counts open, busy and queued sockets per origin while requests run', async () => {
    let arrived = 0
    const release: Array<() => void> = []
    upstream.handler = (_req, res) => {
      arrived++
      release.push(() => res.end('ok'))
    }
    agent = createAgent({ maxSockets: 2 })
    const a = agent
    expect(a.stats()).to.deep.equal({})
    const calls = Array.from({ length: 3 }, () => get(upstream.url, a))
    await waitFor(() => arrived === 2)
    const origin = upstream.url
    expect(a.stats()[origin]).to.deep.equal({ open: 2, busy: 2, queued: 1, aborted: 0, rejected: 0 })
    release.shift()!()
    await waitFor(() => arrived === 3)
    expect(a.stats()[origin]).to.include({ open: 2, busy: 2, queued: 0 })
    for (const done of release.splice(0)) done()
    expect((await Promise.all(calls)).map((answer) => answer.body)).to.deep.equal(['ok', 'ok', 'ok'])
    await waitFor(() => a.stats()[origin]!.busy === 0)
    expect(a.stats()[origin]).to.deep.equal({ open: 2, busy: 0, queued: 0, aborted: 0, rejected: 0 })
  })

  it('destroys a request made inside a request scope when its client disconnects', async function () {
    // The 50 ms bound is the issue's; on the shared 2-core machine a round can miss it by scheduling
    // alone. A retry passes only if the abort works: a request that is not destroyed never passes.
    this.retries(2)
    upstream.aborts = []
    upstream.handler = (_req, res) => {
      res.writeHead(200)
      res.write('start')
    }
    agent = createAgent()
    const a = agent
    let error: unknown
    const app = express()
    app.use(leakGuard())
    app.get('/warm', (_req, res) => {
      res.end('warm')
    })
    app.get('/', (_req, _res) => {
      http
        .get(upstream.url, { agent: a }, (res) => res.resume())
        .on('error', (e) => (error = e))
    })
    inbound = http.createServer(app)
    const port = await listen(inbound)
    await get(`http://127.0.0.1:${port}/warm`, a) // warm the inbound path up: the bound is about the abort
    const client = http.get({ host: '127.0.0.1', port, path: '/' })
    client.on('error', () => {})
    await upstream.nextRequest()
    await delay(20)
    const abortedAt = performance.now()
    client.destroy()
    await waitFor(() => upstream.aborts.length === 1)
    expect(upstream.aborts[0]! - abortedAt).to.be.below(50)
    await waitFor(() => error !== undefined)
    expect(error).to.have.property('code', 'LG_ERR_CLIENT_CLOSED')
    expect(a.stats()[upstream.url]).to.include({ busy: 0, queued: 0, aborted: 1 })
  })

  it('registers with the guard, which destroys it at shutdown', async () => {
    const guard = createGuard()
    agent = createAgent({ guard })
    await get(upstream.url, agent)
    expect(upstream.sockets.size).to.equal(1)
    const [resource] = guard.resources()
    await resource!.close()
    expect(guard.resources()).to.have.length(0)
    await waitFor(() => upstream.sockets.size === 0)
  })
})
