import { expect } from 'chai'
import { ChildApp, RawClient, headerOf, sleep, statusOf } from './helpers.js'

// Every test runs the app in a forked child process and sends it a real SIGTERM. The fixture
// (fixtures/app.mjs) installs createShutdown({ handleSignals: true }) or, on Fastify, the plugin's
// shutdown, and reports what it saw as JSON lines.
const frameworks = ['express', 'koa', 'fastify'] as const

describe('graceful shutdown in a child process', function () {
  this.timeout(15_000)
  let app: ChildApp | undefined
  let clients: RawClient[] = []

  afterEach(async () => {
    for (const c of clients) c.destroy()
    clients = []
    if (app !== undefined) {
      app.kill('SIGKILL')
      await app.exited
      app = undefined
    }
  })

  async function start(framework: string, env: Record<string, string> = {}): Promise<number> {
    app = new ChildApp('app.mjs', { LG_FRAMEWORK: framework, ...env })
    return (await app.waitFor('listening')).port as number
  }

  function client(port: number): RawClient {
    const c = new RawClient(port)
    clients.push(c)
    return c
  }

  for (const framework of frameworks) {
    describe(`with ${framework}`, () => {
      describe('when a keep-alive request is in flight at SIGTERM', () => {
        it('answers it with 200 + Connection: close and closes the server within its remaining time + 100 ms', async () => {
          const port = await start(framework, { LG_KEEPALIVE: '5000' })
          const c = client(port)
          c.get('/slow?ms=400')
          await sleep(100)
          app!.kill('SIGTERM')
          const [response] = await c.responses(1)
          expect(statusOf(response)).to.equal(200)
          expect(headerOf(response, 'connection')).to.equal('close')
          expect(response).to.match(/done$/)
          const responded = (await app!.waitFor('responded')).ms as number
          const closed = (await app!.waitFor('closed')).ms as number
          const summary = await app!.waitFor('summary')
          console.log(`      ${framework} + leak-guard: responded ${responded} ms after SIGTERM, server closed ${closed} ms after SIGTERM (+${closed - responded} ms)`)
          expect(closed - responded).to.be.at.most(100)
          await c.closed
          const exit = await app!.exited
          expect(exit.code).to.equal(0)
          expect(summary).to.include({ drained: 1, aborted: 0, forced: 0 })
        })
      })

      describe('when a handler runs longer than gracePeriod', () => {
        it('aborts its signal with LG_ERR_SHUTDOWN, never leaves the client hanging and exits with 0', async () => {
          const port = await start(framework, { LG_GRACE: '300', LG_FORCE: '1000' })
          const c = client(port)
          c.get('/slow?ms=5000')
          await sleep(100)
          const killedAt = performance.now()
          app!.kill('SIGTERM')
          const aborted = await app!.waitFor('aborted')
          expect(aborted.code).to.equal('LG_ERR_SHUTDOWN')
          const [response] = await c.responses(1, 3_000)
          // A response (503) or a closed connection, but never a hang.
          if (response !== undefined) expect(statusOf(response)).to.equal(503)
          const closedAt = await c.closed
          expect(closedAt - killedAt).to.be.below(1_500)
          const summary = await app!.waitFor('summary')
          expect(summary).to.include({ aborted: 1 })
          const exit = await app!.exited
          expect(exit.code).to.equal(0)
          expect(exit.at - killedAt).to.be.below(2_000)
        })
      })

      describe('during the drain', () => {
        it('answers readiness 503 at once and a new request on a kept-alive connection 503 + Connection: close', async () => {
          const port = await start(framework, { LG_READINESS_DELAY: '300', LG_GRACE: '2000', LG_FORCE: '3000' })
          const before = client(port)
          before.get('/readyz')
          expect(statusOf((await before.responses(1))[0])).to.equal(200)

          const streaming = client(port)
          streaming.get('/stream?ms=700')
          await sleep(50)
          app!.kill('SIGTERM')
          await app!.waitFor('signal')

          const probe = client(port)
          probe.get('/readyz')
          const [ready] = await probe.responses(1)
          expect(statusOf(ready)).to.equal(503)
          expect(headerOf(ready, 'connection')).to.equal('close')

          // Still serving during readinessDelay: the load balancer has not stopped routing yet.
          const late = client(port)
          late.get('/fast')
          expect(statusOf((await late.responses(1))[0])).to.equal(200)

          await sleep(350)
          // The streaming response's head went out before the shutdown (keep-alive); a request sent
          // behind it now must not reach the app.
          streaming.get('/fast')
          const responses = await streaming.responses(2)
          expect(statusOf(responses[0])).to.equal(200)
          expect(statusOf(responses[1])).to.equal(503)
          expect(headerOf(responses[1], 'connection')).to.equal('close')
          expect(responses[1]).to.include('LG_ERR_SHUTDOWN')
          await streaming.closed
          const summary = await app!.waitFor('summary')
          expect(summary).to.include({ rejected: 1, forced: 0 })
          expect((await app!.exited).code).to.equal(0)
        })

        it('closes an idle keep-alive socket opened before the shutdown at once', async () => {
          const port = await start(framework, { LG_KEEPALIVE: '5000' })
          const idle = client(port)
          idle.get('/fast')
          expect(statusOf((await idle.responses(1))[0])).to.equal(200)
          const killedAt = performance.now()
          app!.kill('SIGTERM')
          const closedAt = await idle.closed
          expect(closedAt - killedAt).to.be.below(300)
          expect((await app!.exited).code).to.equal(0)
        })
      })
    })
  }
})
