import { expect } from 'chai'
import { once } from 'node:events'
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { app, inventory } from '../../examples/quickstart/deadlines.js'

function post(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, method: 'POST', headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
      .on('error', reject)
      .end()
  })
}

// The root README's "Deadlines across services" snippet, run for real against a stand-in upstream.
describe('README: deadlines across services', () => {
  let upstream: Server
  let server: Server
  let seen: IncomingHttpHeaders[]

  before(async () => {
    seen = []
    upstream = createServer((req, res) => {
      seen.push(req.headers)
      res.setHeader('content-type', 'application/json')
      res.end('{"reserved":true}')
    }).listen(0, '127.0.0.1')
    await once(upstream, 'listening')
    process.env.INVENTORY_SERVICE = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    server = createServer(app).listen(0, '127.0.0.1')
    await once(server, 'listening')
  })

  after(async () => {
    await inventory.close()
    server.closeAllConnections()
    upstream.closeAllConnections()
    await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => upstream.close(r))])
  })

  const port = () => (server.address() as AddressInfo).port

  it("passes the caller's remaining time, less the margin, on to the upstream", async () => {
    const answer = await post(port(), '/orders', { 'connect-timeout-ms': '1000' })
    expect(answer.status).to.equal(200)
    const sent = Number(seen.at(-1)!['connect-timeout-ms'])
    expect(sent).to.be.at.most(980).and.above(900)
  })

  it('sends the local deadline when the caller sent none', async () => {
    await post(port(), '/orders', {})
    const sent = Number(seen.at(-1)!['connect-timeout-ms'])
    expect(sent).to.be.at.most(5_000).and.above(4_900)
  })

  it('refuses up front, without calling the upstream, when the budget is too small', async () => {
    const before = seen.length
    const answer = await post(port(), '/orders', { 'grpc-timeout': '150m' })
    expect(answer.status).to.equal(503)
    expect(JSON.parse(answer.body)).to.deep.equal({ code: 'INSUFFICIENT_BUDGET' })
    expect(seen.length).to.equal(before)
  })
})
