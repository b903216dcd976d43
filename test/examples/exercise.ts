// The checks every example passes, whatever its framework: the example's routes answer, a full thread
// pool sheds with 503 + Retry-After, an aborted fan-out leaves nothing behind, readiness turns 503 on
// shutdown, and shutdown closes the pool and the client.
import { request, type Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'chai'

interface Shutdown {
  close(): Promise<{ aborted: number; forced: number; resources: number }>
  readonly closing: boolean
}

export interface ExampleUnderTest {
  base: string
  shutdown: Shutdown
  upstreamServer: Server
}

async function get(url: string): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url)
  return { status: res.status, body: await res.text(), headers: res.headers }
}

export function exerciseExample(setup: () => ExampleUnderTest): void {
  it('answers a quote through the bounded client', async () => {
    const { base } = setup()
    const res = await get(`${base}/quotes/acme`)
    expect(res.status).to.equal(200)
    expect(JSON.parse(res.body)).to.deep.equal({ symbol: 'ACME', price: 288 })
  })

  it('answers a portfolio fanned out with scope.spawn', async () => {
    const { base } = setup()
    const res = await get(`${base}/portfolio?symbols=A,B,C`)
    expect(res.status).to.equal(200)
    const body = JSON.parse(res.body) as { total: number; quotes: unknown[] }
    expect(body.quotes).to.have.length(3)
    expect(body.total).to.equal(75 + 76 + 77)
  })

  it('answers a report computed on the thread pool', async () => {
    const { base } = setup()
    const res = await get(`${base}/report?rows=1000`)
    expect(res.status, res.body).to.equal(200)
    expect(JSON.parse(res.body)).to.include({ rows: 1000 })
  })

  it('sheds reports with 503 + Retry-After once the pool and its queue are full', async () => {
    const { base } = setup()
    // 1 thread + 4 queued: of 8 heavy reports at once, at least 3 are shed.
    const results = await Promise.all(Array.from({ length: 8 }, () => get(`${base}/report?rows=3000000`)))
    const shed = results.filter((r) => r.status === 503)
    expect(shed.length).to.be.at.least(3)
    expect(shed[0]!.headers.get('retry-after')).to.equal('1')
    expect(results.filter((r) => r.status === 200).length).to.be.at.least(1)
  })

  it('answers 502 when the quotes service fails', async () => {
    const { base } = setup()
    const res = await get(`${base}/quotes/not%20a%20symbol`)
    expect(res.status).to.equal(502)
  })

  it('aborts the fan-out when the client leaves, leaving no upstream call running', async () => {
    const { base, upstreamServer } = setup()
    const url = new URL(`${base}/portfolio?symbols=${Array.from({ length: 10 }, (_, i) => `S${i}`).join(',')}`)
    let upstreamCalls = 0
    let upstreamAborted = 0
    const onRequest = (_req: unknown, res: { once(e: 'close', fn: () => void): void; writableFinished: boolean }): void => {
      upstreamCalls++
      res.once('close', () => {
        if (!res.writableFinished) upstreamAborted++
      })
    }
    upstreamServer.on('request', onRequest)
    try {
      const req = request(url, () => {})
      req.on('error', () => {})
      req.end()
      // Leave once the fan-out reached the quotes service (each call takes 300 ms there).
      const deadline = Date.now() + 2_000
      while (upstreamCalls === 0 && Date.now() < deadline) await sleep(5)
      req.destroy()
      const settled = Date.now() + 1_000
      while (upstreamAborted < upstreamCalls && Date.now() < settled) await sleep(10)
      expect(upstreamCalls).to.be.greaterThan(0)
      expect(upstreamAborted, 'upstream calls aborted when the client left').to.equal(upstreamCalls)
    } finally {
      upstreamServer.off('request', onRequest)
    }
  })

  it('shows in-flight requests on the debug route', async () => {
    const { base } = setup()
    const slow = get(`${base}/report?rows=3000000`)
    await sleep(30)
    const res = await get(`${base}/debug/requests?format=json`)
    expect(res.status).to.equal(200)
    const snapshot = JSON.parse(res.body) as { inFlight: number }
    expect(snapshot.inFlight).to.be.at.least(1)
    await slow
  })

  it('answers ready, then 503 from the first moment of shutdown, and closes pool and client', async () => {
    const { base, shutdown } = setup()
    expect((await get(`${base}/ready`)).status).to.equal(200)
    const closing = shutdown.close()
    expect(shutdown.closing).to.equal(true)
    const summary = await closing
    expect(summary.forced).to.equal(0)
    expect(summary.resources, 'thread pool and HTTP client closed with the guard').to.equal(2)
  })
}
