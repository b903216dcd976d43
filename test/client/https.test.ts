import { expect } from 'chai'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import * as https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { createHttpClient, type HttpClient } from '@leak-guard/core/client'
import { tlsPair } from '../http2/tls.js'
import { waitFor } from './upstream.js'

describe('createHttpClient() against a TLS upstream', function () {
  this.timeout(10_000)

  let server: https.Server
  let url: string
  let client: HttpClient | undefined
  let sockets: Set<Socket>
  let maxSockets: number
  let requests: number
  let aborts: number
  let handler: (res: ServerResponse) => void

  beforeEach(async () => {
    sockets = new Set()
    maxSockets = 0
    requests = 0
    aborts = 0
    handler = (res) => setTimeout(() => res.end('secure'), 20)
    server = https.createServer(tlsPair, (_req, res) => {
      requests++
      res.on('close', () => {
        if (!res.writableFinished) aborts++
      })
      handler(res)
    })
    server.on('secureConnection', (socket: Socket) => {
      sockets.add(socket)
      maxSockets = Math.max(maxSockets, sockets.size)
      socket.on('close', () => sockets.delete(socket))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterEach(async () => {
    await client?.destroy()
    client = undefined
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('verifies the upstream with the `connect` TLS options and keeps the pool within connections', async () => {
    client = createHttpClient({ connections: 2, connect: { ca: tlsPair.cert } })
    const c = client
    const bodies = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        i % 2 === 0 ? c.fetch(`${url}/f${i}`).then((r) => r.text()) : c.request(`${url}/r${i}`).then((r) => r.body.text()),
      ),
    )
    expect(bodies).to.deep.equal(Array(8).fill('secure'))
    expect(requests).to.equal(8)
    expect(maxSockets).to.be.at.most(2)
    await waitFor(() => c.stats()[url]?.busy === 0)
    expect(c.stats()[url]).to.include({ busy: 0, queued: 0, aborted: 0, rejected: 0 })
    expect(c.stats()[url]!.open).to.be.within(1, 2)
  })

  it('refuses a self-signed upstream without them, with undici’s TLS error', async () => {
    client = createHttpClient()
    const fetchError = (await client.fetch(url).catch((e: unknown) => e)) as { cause?: { code?: string } }
    expect(fetchError).to.be.instanceOf(TypeError)
    expect(fetchError.cause?.code).to.match(/CERT|SELF_SIGNED/)
    const requestError = (await client.request(url).catch((e: unknown) => e)) as { code?: string }
    expect(requestError.code).to.match(/CERT|SELF_SIGNED/)
    expect(requests).to.equal(0)
  })

  it('aborts a TLS call on the client’s timeout and closes its connection', async () => {
    handler = () => {} // never answers
    // 300 ms, not 50: the timeout covers the TLS handshake too, which a loaded CI machine can stretch
    // past 50 ms, and then no request reaches the upstream to be aborted.
    client = createHttpClient({ timeout: 300, connect: { ca: tlsPair.cert } })
    const [fetchError, requestError] = await Promise.all([client.fetch(url).catch((e: unknown) => e), client.request(url).catch((e: unknown) => e)])
    expect(fetchError).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
    expect(requestError).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
    await waitFor(() => aborts === 2)
    await waitFor(() => sockets.size === 0)
    expect(client.stats()[url]).to.include({ busy: 0, queued: 0, aborted: 2 })
  })
})
