import { expect } from 'chai'
import * as http from 'node:http'
import { performance } from 'node:perf_hooks'
import express from 'express'
import { createHttpClient, type HttpClient } from '@leak-guard/core/client'
import { leakGuard } from '@leak-guard/express'
import { Upstream, listen } from './upstream.js'

type Route = (req: express.Request, res: express.Response) => Promise<void>

describe('createHttpClient({ deadlineHeader })', function () {
  this.timeout(20_000)

  let upstream: Upstream
  let client: HttpClient | undefined
  /** Every guarded app a test started (some start two). */
  let inbound: http.Server[] = []
  /** Headers of every request the upstream got, with `performance.now()` at arrival. */
  let seen: Array<{ headers: http.IncomingHttpHeaders; at: number }>

  beforeEach(async () => {
    upstream = await new Upstream().listen()
    seen = []
    upstream.handler = (req, res) => {
      seen.push({ headers: req.headers, at: performance.now() })
      res.end('ok')
    }
  })

  afterEach(async () => {
    await client?.destroy()
    client = undefined
    for (const server of inbound.splice(0)) {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
    await upstream.close()
  })

  /** An Express app guarded with `timeout`, whose one route runs `route`; answers what the route answers. */
  async function serve(route: Route, timeout: number | false = 2_000): Promise<number> {
    const app = express()
    app.use(leakGuard({ timeout }))
    app.get('/', (req, res, next) => {
      route(req, res).catch(next)
    })
    app.use((error: { code?: string; statusCode?: number }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      if (!res.headersSent) res.status(error.statusCode ?? 500).json({ code: error.code })
    })
    const server = http.createServer(app)
    inbound.push(server)
    return listen(server)
  }

  function get(port: number): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (body += chunk))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        })
        .on('error', reject)
    })
  }

  it('rejects a bad deadlineHeader with LG_ERR_INVALID_OPTION, at creation and per call', async () => {
    for (const value of ['Connect', 'bad header', 0, true, null, { name: 'a b' }, { header: 'x' }, ['grpc']]) {
      expect(() => createHttpClient({ deadlineHeader: value } as never), String(value))
        .to.throw()
        .with.property('code', 'LG_ERR_INVALID_OPTION')
    }
    client = createHttpClient()
    const error = await client.fetch(upstream.url, { deadlineHeader: 'soon' as never }).catch((e: unknown) => e)
    expect(error).to.have.property('code', 'LG_ERR_INVALID_OPTION')
  })

  it('sends Connect-Timeout-Ms with the time left, rounded down, inside a request with a deadline (fetch and request)', async () => {
    client = createHttpClient()
    const c = client
    const sent: number[] = []
    const port = await serve(async (req, res) => {
      sent.push(req.scope.remaining())
      await (await c.fetch(upstream.url)).text()
      sent.push(req.scope.remaining())
      await (await c.request(upstream.url)).body.text()
      res.end('done')
    }, 2_000)
    expect((await get(port)).status).to.equal(200)
    expect(seen).to.have.length(2)
    for (const [i, { headers }] of seen.entries()) {
      const value = Number(headers['connect-timeout-ms'])
      expect(headers['connect-timeout-ms']).to.match(/^\d+$/)
      // Measured when the call was sent: no more than what was left just before the call was made.
      expect(value).to.be.at.most(Math.floor(sent[i]!)).and.above(1_000)
      expect(headers['grpc-timeout']).to.equal(undefined)
    }
  })

  it("sends gRPC's, Envoy's or a header of your own, per client and per call, and nothing with false", async () => {
    client = createHttpClient({ deadlineHeader: 'grpc' })
    const c = client
    const port = await serve(async (_req, res) => {
      await (await c.fetch(upstream.url)).text()
      await (await c.fetch(upstream.url, { deadlineHeader: 'envoy' })).text()
      await (await c.request(upstream.url, { deadlineHeader: { name: 'X-Budget-Ms' } })).body.text()
      await (await c.request(upstream.url, { deadlineHeader: false })).body.text()
      res.end('done')
    })
    await get(port)
    expect(seen).to.have.length(4)
    expect(seen[0]!.headers['grpc-timeout']).to.match(/^\d{1,8}m$/)
    expect(seen[1]!.headers['x-envoy-expected-rq-timeout-ms']).to.match(/^\d+$/)
    expect(seen[1]!.headers['grpc-timeout']).to.equal(undefined)
    expect(seen[2]!.headers['x-budget-ms']).to.match(/^\d+$/)
    const names = (h: http.IncomingHttpHeaders) => Object.keys(h).filter((n) => /timeout|budget/.test(n))
    expect(names(seen[3]!.headers)).to.deep.equal([])
  })

  it('adds nothing outside a request, in a request without a deadline, or when the caller set the header', async () => {
    client = createHttpClient()
    const c = client
    await (await c.fetch(upstream.url)).text()
    await (await c.request(upstream.url)).body.text()
    const port = await serve(async (_req, res) => {
      await (await c.fetch(upstream.url, { headers: { 'Connect-Timeout-Ms': '77' } })).text()
      await (await c.request(upstream.url, { headers: ['connect-timeout-ms', '66'] })).body.text()
      await (await c.request(upstream.url, { headers: { 'CONNECT-TIMEOUT-MS': '55', 'x-other': 'kept' } })).body.text()
      res.end('done')
    })
    await get(port)
    const noDeadline = await serve(async (_req, res) => {
      await (await c.fetch(upstream.url)).text()
      res.end('done')
    }, false)
    await get(noDeadline)
    expect(seen.map((s) => s.headers['connect-timeout-ms'])).to.deep.equal([undefined, undefined, '77', '66', '55', undefined])
    expect(seen[4]!.headers['x-other']).to.equal('kept')
  })

  it('measures the time left when a queued call gets its connection, not when it was made', async () => {
    client = createHttpClient({ connections: 1 })
    const c = client
    upstream.handler = (req, res) => {
      seen.push({ headers: req.headers, at: performance.now() })
      // The first call holds the only connection for 300 ms.
      if (seen.length === 1) setTimeout(() => res.end('ok'), 300)
      else res.end('ok')
    }
    let madeWith = 0
    const port = await serve(async (req, res) => {
      const first = c.fetch(upstream.url).then((r) => r.text())
      madeWith = req.scope.remaining()
      const second = c.fetch(upstream.url).then((r) => r.text())
      await Promise.all([first, second])
      res.end('done')
    }, 2_000)
    await get(port)
    expect(seen).to.have.length(2)
    const first = Number(seen[0]!.headers['connect-timeout-ms'])
    const second = Number(seen[1]!.headers['connect-timeout-ms'])
    // The second waited ≥ 300 ms for the connection; what it carries says so.
    expect(second).to.be.at.most(madeWith - 250)
    expect(first - second).to.be.at.least(250)
  })

  for (const api of ['fetch', 'request'] as const) {
    it(`does not send a call whose request has no whole millisecond left; it rejects with LG_ERR_TIMEOUT and the request gets its 503 (${api})`, async () => {
      client = createHttpClient()
      const c = client
      await (await c.fetch(upstream.url, { scope: false })).text()
      seen = []
      let error: { code?: string } | undefined
      const port = await serve(async (req) => {
        // Past the deadline before its timer could run: the event loop is busy, as under load.
        const until = performance.now() + 80
        while (performance.now() < until);
        expect(req.scope.aborted).to.equal(false)
        try {
          if (api === 'fetch') await c.fetch(upstream.url)
          else await c.request(upstream.url)
        } catch (e) {
          error = e as { code?: string }
        }
      }, 50)
      const answer = await get(port)
      expect(answer.status).to.equal(503)
      expect(error?.code).to.equal('LG_ERR_TIMEOUT')
      expect(seen).to.have.length(0)
      expect(upstream.requests).to.equal(1)
    })
  }
})
