import { expect } from 'chai'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { getEventListeners } from 'node:events'
import * as http from 'node:http'
import { performance } from 'node:perf_hooks'
import express from 'express'
import Fastify from 'fastify'
import { getGlobalDispatcher, interceptors, request as undiciRequest } from 'undici'
import { ClientClosedError, createGuard, currentScope, isLeakGuardError, type LeakEvent } from '@leak-guard/core'
import { HttpClientClosedError, createHttpClient, type HttpClient } from '@leak-guard/core/client'
import { leakGuard } from '@leak-guard/express'
import fastifyLeakGuard from '@leak-guard/fastify'
import { Upstream, delay, listen, waitFor } from './upstream.js'

type Route = (req: express.Request, res: express.Response) => Promise<void>

describe('createHttpClient()', function () {
  this.timeout(20_000)

  let upstream: Upstream
  let client: HttpClient | undefined
  let inbound: http.Server | undefined
  let inboundAgent: http.Agent | undefined
  /** Leaks reported by the guard of the app `serve()` started last. */
  let leaks: LeakEvent[] = []
  /** `undici:request:create` as it happened: the request's path and `currentScope()?.id` at that moment. */
  let created: Array<{ path: string; scope: number | undefined }> = []
  function onCreate(message: unknown): void {
    const request = (message as { request: { path: string } }).request
    created.push({ path: request.path, scope: currentScope()?.id })
  }

  beforeEach(async () => {
    upstream = await new Upstream().listen()
    leaks = []
    created = []
    subscribe('undici:request:create', onCreate)
  })

  afterEach(async () => {
    unsubscribe('undici:request:create', onCreate)
    await client?.destroy()
    client = undefined
    inboundAgent?.destroy()
    inboundAgent = undefined
    if (inbound !== undefined) {
      inbound.closeAllConnections()
      await new Promise((resolve) => inbound!.close(resolve))
      inbound = undefined
    }
    await upstream.close()
  })

  /** An Express app guarded by leak-guard with one route, on a real socket. */
  async function serve(route: Route, timeout: number | false = 5_000): Promise<number> {
    const app = express()
    const middleware = leakGuard({ timeout })
    middleware.guard.on('leak', (event: LeakEvent) => leaks.push(event))
    app.use(middleware)
    app.get('/', (req, res, next) => {
      route(req, res).catch(next)
    })
    inbound = http.createServer(app)
    return listen(inbound)
  }

  function get(port: number, agent?: http.Agent): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (body += chunk))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        })
        .on('error', reject)
    })
  }

  /** An upstream that sends headers, then a chunk every 10 ms, forever. */
  function streamForever(): void {
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      const timer = setInterval(() => res.write('x'.repeat(16)), 10)
      res.on('close', () => clearInterval(timer))
    }
  }

  describe('with invalid options', () => {
    const cases: Array<[string, unknown]> = [
      ['connections', 0],
      ['connections', 1.5],
      ['maxQueue', -1],
      ['maxQueue', '10'],
      ['timeout', 0],
      ['keepAliveTimeout', false],
      ['connectTimeout', -5],
      ['headersTimeout', 'soon'],
      ['bodyTimeout', Infinity],
      ['connect', 'tls'],
      ['guard', {}],
      ['conections', 4],
    ]
    for (const [option, value] of cases) {
      it(`throws LG_ERR_INVALID_OPTION for ${option}: ${String(value)}`, () => {
        expect(() => createHttpClient({ [option]: value } as never))
          .to.throw()
          .with.property('code', 'LG_ERR_INVALID_OPTION')
      })
    }

    it('accepts maxQueue 0 and false, and timeout false', () => {
      for (const options of [{ maxQueue: 0 }, { maxQueue: false as const }, { timeout: false as const }]) {
        client = createHttpClient(options)
        void client.destroy()
      }
    })
  })

  describe('when the client of the inbound request disconnects', () => {
    for (const api of ['fetch', 'request'] as const) {
      it(`closes the upstream request within 50 ms and reads nothing more (${api})`, async function () {
        // The 50 ms bound is the issue's; on the shared 2-core machine a round can miss it by scheduling
        // alone. A retry passes only if the abort works: a call that is not aborted never passes.
        this.retries(2)
        streamForever()
        client = createHttpClient({ connections: 2 })
        const c = client
        let chunksAfterAbort = 0
        let abortedAt = 0
        let scopeAborted = false
        let error: unknown
        // Warm up undici and this path first: the bound below is about the abort, not first-call compilation.
        await (await c.fetch(`${upstream.url}/warm`, { scope: false })).body?.cancel()
        const port = await serve(async (req) => {
          req.scope.onAbort(() => (scopeAborted = true))
          try {
            if (api === 'fetch') {
              const response = await c.fetch(upstream.url)
              for await (const _chunk of response.body!) if (scopeAborted) chunksAfterAbort++
            } else {
              const { body } = await c.request(upstream.url)
              for await (const _chunk of body) if (scopeAborted) chunksAfterAbort++
            }
          } catch (e) {
            error = e
            expect(req.scope.aborted).to.equal(true)
          }
        })
        const inboundReq = http.get({ host: '127.0.0.1', port, path: '/' })
        inboundReq.on('error', () => {})
        const seen = upstream.requests
        await waitFor(() => upstream.requests > seen)
        await delay(30)
        abortedAt = performance.now()
        inboundReq.destroy()
        await waitFor(() => upstream.aborts.length === 1)
        expect(upstream.aborts[0]! - abortedAt).to.be.below(50)
        await waitFor(() => error !== undefined)
        expect(error).to.have.property('code', 'LG_ERR_CLIENT_CLOSED')
        await delay(40)
        expect(chunksAfterAbort).to.equal(0)
        const stats = c.stats()[upstream.url]!
        expect(stats.aborted).to.equal(1)
        expect(stats.busy + stats.queued).to.equal(0)
      })
    }
  })

  describe('when the inbound request times out', () => {
    it('aborts the outgoing call with the request’s TimeoutError, unlike an upstream failure', async () => {
      let hang = true
      upstream.handler = (req, res) => {
        if (hang) return // never answers
        req.socket.destroy() // an upstream failure
        void res
      }
      client = createHttpClient()
      const c = client
      const errors: unknown[] = []
      let scopeReason: unknown
      const port = await serve(async (req, res) => {
        try {
          await c.fetch(upstream.url)
        } catch (e) {
          errors.push(e)
          scopeReason = req.scope.reason
        }
        try {
          await c.request(upstream.url)
        } catch (e) {
          errors.push(e)
        }
        if (!res.headersSent) res.end('answered')
      }, 250) // room for the first call to reach the upstream on a loaded machine
      const started = performance.now()
      const answer = await get(port)
      expect(answer.status).to.equal(503)
      await waitFor(() => errors.length === 2)
      const [fetchError, requestError] = errors
      expect(fetchError).to.equal(scopeReason)
      expect(fetchError).to.have.property('code', 'LG_ERR_TIMEOUT')
      expect(isLeakGuardError(fetchError)).to.equal(true)
      // The scope is already aborted: the second call fails at once, without reaching the upstream.
      expect(requestError).to.have.property('code', 'LG_ERR_TIMEOUT')
      expect(upstream.requests).to.equal(1)
      await waitFor(() => upstream.aborts.length === 1)
      expect(upstream.aborts[0]! - started).to.be.below(250 + 100)

      // The same calls against a failing upstream keep undici's own errors.
      hang = false
      const failures = await Promise.allSettled([c.fetch(upstream.url, { scope: false }), c.request(upstream.url, { scope: false })])
      const fetchFailure = (failures[0] as PromiseRejectedResult).reason as { cause?: { code?: string } }
      const requestFailure = (failures[1] as PromiseRejectedResult).reason as { code?: string }
      expect(isLeakGuardError(fetchFailure)).to.equal(false)
      expect(fetchFailure).to.be.instanceOf(TypeError)
      expect(fetchFailure.cause?.code).to.match(/^UND_ERR_/)
      expect(isLeakGuardError(requestFailure)).to.equal(false)
      expect(requestFailure.code).to.match(/^UND_ERR_/)
    })

    it('fails with LG_ERR_CLIENT_TIMEOUT when the client’s own timeout comes first', async () => {
      upstream.handler = () => {}
      client = createHttpClient({ timeout: 40 })
      const c = client
      let error: unknown
      const port = await serve(async (_req, res) => {
        try {
          await c.request(upstream.url)
        } catch (e) {
          error = e
        }
        res.end('done')
      }, 2_000)
      const answer = await get(port)
      expect(answer.status).to.equal(200)
      expect(error).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
      expect(error).to.have.property('statusCode', 504)
      await waitFor(() => upstream.aborts.length === 1)
    })
  })

  describe('outside a request scope, without a caller’s signal (fetch gets no AbortSignal)', () => {
    it('the client’s timeout rejects fetch with LG_ERR_CLIENT_TIMEOUT and errors a half-read body with it as cause', async () => {
      let answer = false
      upstream.handler = (_req, res) => {
        if (!answer) return // never answers
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('first')
      }
      client = createHttpClient({ timeout: 60 })
      const before = performance.now()
      const error = await client.fetch(upstream.url).catch((e: unknown) => e)
      expect(error).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
      expect(performance.now() - before).to.be.within(50, 60 + 200)
      await waitFor(() => upstream.aborts.length === 1)

      answer = true
      const response = await client.fetch(upstream.url)
      const reader = response.body!.getReader()
      expect((await reader.read()).done).to.equal(false)
      const bodyError = await reader.read().catch((e: unknown) => e)
      // Without a signal of the client's, undici's fetch errors the stream with its own TypeError.
      expect(bodyError).to.be.instanceOf(TypeError)
      expect((bodyError as { cause?: unknown }).cause).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
      await waitFor(() => upstream.aborts.length === 2)
      expect(client.stats()[upstream.url]).to.include({ aborted: 2, busy: 0, queued: 0 })
    })

    it('destroy() fails a fetch in flight with undici’s ClientDestroyedError as cause, and errors a half-read body', async () => {
      let answer = false
      upstream.handler = (_req, res) => {
        if (!answer) return
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('first')
      }
      client = createHttpClient()
      const pending = client.fetch(upstream.url).catch((e: unknown) => e)
      await upstream.nextRequest()
      await client.destroy()
      const error = (await pending) as { cause?: unknown }
      expect(error).to.be.instanceOf(TypeError)
      expect(error.cause).to.have.property('code', 'UND_ERR_DESTROYED')
      await waitFor(() => upstream.aborts.length === 1)

      answer = true
      const other = createHttpClient()
      client = other
      const response = await other.fetch(upstream.url)
      const reader = response.body!.getReader()
      expect((await reader.read()).done).to.equal(false)
      const reading = reader.read().catch((e: unknown) => e)
      await other.destroy()
      const bodyError = (await reading) as { cause?: unknown }
      expect(bodyError).to.be.instanceOf(TypeError)
      expect(bodyError.cause).to.have.property('code', 'UND_ERR_DESTROYED')
      await waitFor(() => upstream.aborts.length === 2)
    })

    it('times out each call at its own deadline under the client’s timeout, and never one that finished', async () => {
      upstream.handler = (req, res) => {
        if (req.url === '/fast') setTimeout(() => res.end('ok'), 10)
        // anything else never answers
      }
      client = createHttpClient({ timeout: 100 })
      const c = client
      const timed = (call: Promise<unknown>): Promise<{ error: unknown; after: number }> => {
        const started = performance.now()
        return call.then(
          () => ({ error: undefined, after: performance.now() - started }),
          (error: unknown) => ({ error, after: performance.now() - started }),
        )
      }
      const first = timed(c.request(`${upstream.url}/slow1`))
      const fast = c.fetch(`${upstream.url}/fast`).then((r) => r.text())
      await delay(50)
      const second = timed(c.fetch(`${upstream.url}/slow2`))
      expect(await fast).to.equal('ok')
      const [a, b] = await Promise.all([first, second])
      for (const outcome of [a, b]) {
        expect(outcome.error).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
        expect(outcome.after).to.be.within(95, 100 + 150)
      }
      await waitFor(() => upstream.aborts.length === 2)
      expect(c.stats()[upstream.url]).to.include({ aborted: 2, busy: 0, queued: 0 })
    })

    it('a request() undici refuses before dispatching leaves no listener on the caller’s signal', async () => {
      client = createHttpClient()
      const caller = new AbortController()
      const error = await client.request(upstream.url, { signal: caller.signal, highWaterMark: -1 }).catch((e: unknown) => e)
      expect(error).to.have.property('code', 'UND_ERR_INVALID_ARG')
      expect(getEventListeners(caller.signal, 'abort')).to.have.length(0)
      expect(upstream.requests).to.equal(0)
      expect(client.stats()[upstream.url]).to.equal(undefined)
    })
  })

  describe('when a call waiting for a connection is aborted', () => {
    it('rejects at once with the reason and frees its queue slot without reaching the upstream', async () => {
      upstream.handler = () => {}
      client = createHttpClient({ connections: 1, maxQueue: 1 })
      const c = client
      let error: unknown
      let rejectedAfter = 0
      const port = await serve(async (req, res) => {
        void c.request(upstream.url, { scope: false }).catch(() => {}) // holds the only connection
        await upstream.nextRequest()
        expect(c.stats()[upstream.url]).to.include({ busy: 1, queued: 0 })
        const queued = c.fetch(upstream.url)
        expect(c.stats()[upstream.url]).to.include({ queued: 1 })
        try {
          await queued
        } catch (e) {
          error = e
          rejectedAfter = req.scope.age()
        }
        if (!res.headersSent) res.end()
      }, 60)
      const answer = await get(port)
      expect(answer.status).to.equal(503)
      await waitFor(() => error !== undefined)
      expect(error).to.have.property('code', 'LG_ERR_TIMEOUT')
      expect(rejectedAfter).to.be.below(60 + 50)
      expect(c.stats()[upstream.url]).to.include({ busy: 1, queued: 0, aborted: 1 })
      // The slot is free again: one more call may queue.
      const again = c.request(upstream.url, { scope: false, timeout: 30 }).catch((e: unknown) => e)
      expect(await again).to.have.property('code', 'LG_ERR_CLIENT_TIMEOUT')
      expect(upstream.requests).to.equal(1)
      // Neither queued call was ever handed to undici: only the one holding the connection was created.
      expect(created).to.have.length(1)
    })
  })

  describe('when more calls are in flight than connections', () => {
    // 'interceptor': undici's request() on `client.dispatcher` composed with an interceptor whose handler
    // uses undici 7's handler interface (onRequestStart...), which undici wraps on the way to a connection.
    const cases: Array<[number, 'request' | 'fetch' | 'interceptor']> = [
      [1, 'request'],
      [2, 'request'],
      [2, 'fetch'],
      [2, 'interceptor'],
    ]
    for (const [connections, api] of cases) {
      it(`creates each queued call in the context of the inbound request that made it (connections: ${connections}, ${api})`, async () => {
        upstream.handler = (_req, res) => {
          setTimeout(() => res.end('ok'), 40)
        }
        client = createHttpClient({ connections })
        const c = client
        const inboundCount = 4 * connections
        let maxQueued = 0
        const port = await serve(async (req, res) => {
          const url = `${upstream.url}/?from=${req.scope.id}`
          let body: string
          if (api === 'request') {
            const pending = c.request(url)
            maxQueued = Math.max(maxQueued, c.stats()[upstream.url]?.queued ?? 0)
            body = await (await pending).body.text()
          } else if (api === 'fetch') {
            body = await (await c.fetch(url)).text()
          } else {
            const composed = c.dispatcher.compose(interceptors.redirect({ maxRedirections: 1 }))
            body = await (await undiciRequest(url, { dispatcher: composed })).body.text()
          }
          res.end(body)
        })
        const answers = await Promise.all(Array.from({ length: inboundCount }, () => get(port)))
        expect(answers.map((a) => a.body)).to.deep.equal(Array(inboundCount).fill('ok'))
        if (api === 'request') expect(maxQueued).to.be.above(0)
        expect(upstream.maxSockets).to.be.at.most(connections)
        expect(created).to.have.length(inboundCount)
        const fromIds = created.map(({ path }) => Number(new URL(path, upstream.url).searchParams.get('from')))
        expect(new Set(fromIds).size).to.equal(inboundCount)
        expect(created.map(({ scope }) => scope)).to.deep.equal(fromIds)
        // Nothing was reported as late work: every call was made by a request that was still running.
        expect(leaks.filter((event) => event.kind === 'request')).to.deep.equal([])
      })
    }

    it('never creates a call aborted after it left the queue but before undici gave it a connection', async () => {
      // undici frees a connection one event-loop turn after its response ended, so the queued call handed
      // over when a slot frees waits that turn in undici's pool; it is aborted during that turn here.
      upstream.handler = (_req, res) => {
        setTimeout(() => res.end('ok'), 20)
      }
      client = createHttpClient({ connections: 2 })
      const c = client
      const caller = new AbortController()
      const reason = new Error('caller gave up')
      const first = c.request(`${upstream.url}/first`, { scope: false })
      const second = c.request(`${upstream.url}/second`, { scope: false })
      const queued = c.request(`${upstream.url}/queued`, { scope: false, signal: caller.signal }).catch((e: unknown) => e)
      expect(c.stats()[upstream.url]).to.include({ queued: 1 })
      await (await first).body.text()
      // The queue emptied when `first` finished; undici has not created the handed-over call yet.
      expect(c.stats()[upstream.url]).to.include({ queued: 0 })
      caller.abort(reason)
      expect(await queued).to.equal(reason)
      await (await second).body.text()
      await delay(30)
      expect(created.map(({ path }) => path)).to.deep.equal(['/first', '/second'])
      expect(upstream.requests).to.equal(2)
      expect(c.stats()[upstream.url]).to.include({ busy: 0, queued: 0, aborted: 1 })
      // The pool still works.
      expect(await (await c.request(`${upstream.url}/after`, { scope: false })).body.text()).to.equal('ok')
    })
  })

  describe('with 100 concurrent calls and connections: 4', () => {
    /** The upstream answers after `ms`. */
    function slowUpstream(ms: number): void {
      upstream.handler = (_req, res) => {
        setTimeout(() => res.end('ok'), ms)
      }
    }

    it('never opens more than 4 sockets to the upstream and completes every call', async () => {
      slowUpstream(20)
      client = createHttpClient({ connections: 4, maxQueue: false })
      const c = client
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          i % 2 === 0 ? c.fetch(upstream.url).then((r) => r.text()) : c.request(upstream.url).then((r) => r.body.text()),
        ),
      )
      expect(results.every((body) => body === 'ok')).to.equal(true)
      expect(upstream.maxSockets).to.be.at.most(4)
      expect(upstream.requests).to.equal(100)
    })

    it('with maxQueue 10 fails the other 86 at once with LG_ERR_CLIENT_QUEUE_FULL', async () => {
      slowUpstream(300)
      client = createHttpClient({ connections: 4, maxQueue: 10 })
      const c = client
      const started = performance.now()
      const rejectedAt: number[] = []
      const fulfilledAt: number[] = []
      const outcomes = await Promise.allSettled(
        Array.from({ length: 100 }, (_, i) => {
          const call = i % 2 === 0 ? c.fetch(upstream.url).then((r) => r.text()) : c.request(upstream.url).then((r) => r.body.text())
          call.then(
            () => fulfilledAt.push(performance.now() - started),
            () => rejectedAt.push(performance.now() - started),
          )
          return call
        }),
      )
      const ok = outcomes.filter((o) => o.status === 'fulfilled')
      const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected')
      expect(ok).to.have.length(14)
      expect(rejected).to.have.length(86)
      for (const r of rejected) {
        expect(r.reason).to.have.property('code', 'LG_ERR_CLIENT_QUEUE_FULL')
        expect(r.reason).to.have.property('statusCode', 503)
      }
      // Failed fast: all of them before the first upstream answer (300 ms) freed a connection.
      expect(Math.max(...rejectedAt)).to.be.below(Math.min(...fulfilledAt))
      expect(Math.max(...rejectedAt)).to.be.below(250)
      expect(upstream.maxSockets).to.be.at.most(4)
      expect(upstream.requests).to.equal(14)
      expect(c.stats()[upstream.url]).to.include({ rejected: 86, busy: 0, queued: 0 })
    })
  })

  describe('when handlers ignore response bodies', () => {
    for (const api of ['fetch', 'request'] as const) {
      it(`keeps the pool within connections over 1,000 requests and completes them all (${api})`, async () => {
        // 256 KiB: far more than undici buffers, so an unread body holds its connection until cancelled.
        const payload = Buffer.alloc(256 * 1024, 'y')
        upstream.handler = (_req, res) => res.end(payload)
        client = createHttpClient({ connections: 4, maxQueue: false })
        const c = client
        let maxOpen = 0
        const port = await serve(async (_req, res) => {
          if (api === 'fetch') {
            const r = await c.fetch(upstream.url)
            res.end(String(r.status))
          } else {
            const r = await c.request(upstream.url)
            res.end(String(r.statusCode))
          }
          const open = c.stats()[upstream.url]?.open ?? 0
          if (open > maxOpen) maxOpen = open
        })
        inboundAgent = new http.Agent({ keepAlive: true, maxSockets: 16 })
        const agent = inboundAgent
        let done = 0
        const worker = async (): Promise<void> => {
          while (done < 1_000) {
            done++
            const answer = await get(port, agent)
            expect(answer).to.deep.equal({ status: 200, body: '200' })
          }
        }
        await Promise.all(Array.from({ length: 16 }, worker))
        expect(upstream.requests).to.equal(1_000)
        expect(maxOpen).to.be.at.most(4)
        expect(upstream.maxSockets).to.be.at.most(4)
        await waitFor(() => {
          const s = c.stats()[upstream.url]!
          return s.busy === 0 && s.queued === 0
        })
        const stats = c.stats()[upstream.url]!
        expect(stats.open).to.be.at.most(4)
        // request(): every unread body was cancelled when its request ended. fetch() buffers a body this
        // size into its stream by itself, so its connections were released without a cancel.
        if (api === 'request') expect(stats.aborted).to.equal(1_000)
      })
    }
  })

  describe('installGlobal()', () => {
    it('routes the global fetch through the bounded pool and can be undone', async () => {
      upstream.handler = (_req, res) => {
        setTimeout(() => res.end('ok'), 30)
      }
      const before = getGlobalDispatcher()
      client = createHttpClient({ connections: 1, maxQueue: 0 })
      const undo = client.installGlobal()
      expect(client.installGlobal()).to.equal(undo)
      const bounded = await Promise.allSettled([1, 2, 3].map(() => fetch(upstream.url).then((r) => r.text())))
      expect(bounded.filter((o) => o.status === 'fulfilled')).to.have.length(1)
      for (const o of bounded.filter((o): o is PromiseRejectedResult => o.status === 'rejected')) {
        expect(o.reason.cause).to.have.property('code', 'LG_ERR_CLIENT_QUEUE_FULL')
      }
      expect(upstream.maxSockets).to.equal(1)
      expect(client.stats()[upstream.url]!.rejected).to.equal(2)

      undo()
      expect(getGlobalDispatcher()).to.equal(before)
      const free = await Promise.all([1, 2, 3].map(() => fetch(upstream.url).then((r) => r.text())))
      expect(free).to.deep.equal(['ok', 'ok', 'ok'])
      expect(upstream.maxSockets).to.be.above(1)
      expect(client.stats()[upstream.url]!.rejected).to.equal(2)
    })

    it('aborts a global fetch made inside a request when its client disconnects', async () => {
      streamForever()
      client = createHttpClient()
      const undo = client.installGlobal()
      try {
        let error: unknown
        const port = await serve(async () => {
          try {
            const r = await fetch(upstream.url)
            for await (const _chunk of r.body!);
          } catch (e) {
            error = e
          }
        })
        const inboundReq = http.get({ host: '127.0.0.1', port, path: '/' })
        inboundReq.on('error', () => {})
        await upstream.nextRequest()
        await delay(20)
        const abortedAt = performance.now()
        inboundReq.destroy()
        await waitFor(() => upstream.aborts.length === 1)
        expect(upstream.aborts[0]! - abortedAt).to.be.below(50)
        await waitFor(() => error !== undefined)
      } finally {
        undo()
      }
    })
  })

  describe('with a caller’s signal', () => {
    it('honours both the signal and the scope, and removes its listener from the signal', async () => {
      upstream.handler = (_req, res) => res.end('ok')
      client = createHttpClient()
      const c = client
      const lifetime = new AbortController()
      for (let i = 0; i < 50; i++) {
        const r = await c.request(upstream.url, { signal: lifetime.signal })
        await r.body.text()
        await (await c.fetch(upstream.url, { signal: lifetime.signal })).text()
      }
      expect(getEventListeners(lifetime.signal, 'abort')).to.have.length(0)

      upstream.handler = () => {}
      const reason = new Error('caller gave up')
      const pending = c.fetch(upstream.url, { signal: lifetime.signal })
      await upstream.nextRequest()
      lifetime.abort(reason)
      let error: unknown
      await pending.catch((e: unknown) => (error = e))
      expect(error).to.equal(reason)
      await waitFor(() => upstream.aborts.length === 1)
    })
  })

  describe('close() and destroy()', () => {
    it('registers with the guard, closes idempotently and unregisters', async () => {
      const guard = createGuard()
      client = createHttpClient({ guard })
      expect(guard.resources()).to.include(client)
      await (await client.fetch(upstream.url)).text()
      const first = client.close()
      expect(client.close()).to.equal(first)
      await first
      expect(client.closed).to.equal(true)
      expect(guard.resources()).to.not.include(client)
      const after = await client.fetch(upstream.url).catch((e: unknown) => e)
      expect(after).to.have.property('code', 'LG_ERR_CLIENT_HTTP_CLOSED')
      await waitFor(() => upstream.sockets.size === 0)
    })

    for (const end of ['close', 'destroy'] as const) {
      it(`after ${end}(), rejects fetch, request, installGlobal() and calls through its dispatcher with LG_ERR_CLIENT_HTTP_CLOSED and sends nothing`, async () => {
        upstream.handler = (_req, res) => res.end('ok')
        client = createHttpClient()
        const c = client
        await (await c.fetch(upstream.url)).text()
        expect(upstream.requests).to.equal(1)
        await c[end]()
        const outcomes = [
          await c.fetch(upstream.url).catch((e: unknown) => e),
          await c.request(upstream.url).catch((e: unknown) => e),
          (() => {
            try {
              c.installGlobal()
            } catch (e) {
              return e
            }
            return undefined
          })(),
          await undiciRequest(upstream.url, { dispatcher: c.dispatcher }).catch((e: unknown) => e),
        ]
        for (const outcome of outcomes) {
          expect(outcome).to.be.instanceOf(HttpClientClosedError)
          expect(outcome).to.include({ code: 'LG_ERR_CLIENT_HTTP_CLOSED', statusCode: 503, expose: true })
          // Not the inbound client's error, which shares the word "closed".
          expect(outcome).to.not.be.instanceOf(ClientClosedError)
        }
        expect(getGlobalDispatcher()).to.not.equal(c.dispatcher)
        expect(upstream.requests).to.equal(1)
      })
    }

    it('close() lets queued calls run first and refuses new ones; destroy() fails queued calls unsent', async () => {
      upstream.handler = (_req, res) => {
        setTimeout(() => res.end('ok'), 20)
      }
      client = createHttpClient({ connections: 1 })
      const c = client
      const calls = [1, 2, 3].map((i) => c.request(`${upstream.url}/${i}`).then((r) => r.body.text()))
      expect(c.stats()[upstream.url]).to.include({ queued: 2 })
      const closed = c.close()
      const refused = await c.request(upstream.url).catch((e: unknown) => e)
      expect(refused).to.have.property('code', 'LG_ERR_CLIENT_HTTP_CLOSED')
      expect(await Promise.all(calls)).to.deep.equal(['ok', 'ok', 'ok'])
      await closed
      expect(upstream.requests).to.equal(3)

      const other = createHttpClient({ connections: 1 })
      client = other
      const running = other.request(`${upstream.url}/running`).catch((e: unknown) => e)
      const waiting = [1, 2].map((i) => other.request(`${upstream.url}/waiting${i}`).catch((e: unknown) => e))
      await upstream.nextRequest()
      await other.destroy()
      for (const outcome of await Promise.all([running, ...waiting])) expect(outcome).to.have.property('code', 'UND_ERR_DESTROYED')
      expect(created.map(({ path }) => path).filter((path) => path.startsWith('/waiting'))).to.deep.equal([])
      expect(upstream.requests).to.equal(4)
    })

    it('destroy() aborts calls in flight', async () => {
      upstream.handler = () => {}
      client = createHttpClient()
      const pending = client.request(upstream.url).catch((e: unknown) => e)
      await upstream.nextRequest()
      const destroyed = client.destroy()
      expect(client.destroy()).to.equal(destroyed)
      await destroyed
      expect(await pending).to.have.property('code', 'UND_ERR_DESTROYED')
      await waitFor(() => upstream.aborts.length === 1)
    })
  })

  describe('with Fastify', () => {
    it('aborts the outgoing call when the route times out', async () => {
      upstream.handler = () => {}
      client = createHttpClient()
      const c = client
      const app = Fastify()
      let error: unknown
      await app.register(fastifyLeakGuard, { timeout: 60 })
      app.get('/', async () => {
        try {
          await c.fetch(upstream.url)
        } catch (e) {
          error = e
          throw e
        }
        return 'never'
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      try {
        const port = (app.server.address() as { port: number }).port
        const answer = await get(port)
        expect(answer.status).to.equal(503)
        await waitFor(() => error !== undefined)
        expect(error).to.have.property('code', 'LG_ERR_TIMEOUT')
        await waitFor(() => upstream.aborts.length === 1)
      } finally {
        await app.close()
      }
    })
  })
})
