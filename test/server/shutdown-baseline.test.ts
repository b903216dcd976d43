import { expect } from 'chai'
import { ChildApp, RawClient, headerOf, sleep, statusOf } from './helpers.js'

// The baseline the leak-guard shutdown is measured against (shutdown.test.ts): the same app and the
// same keep-alive request in flight at SIGTERM, but SIGTERM only calls server.close() (fastify.close()
// on Fastify). Node answers with `Connection: keep-alive` and the server only closes once the idle
// socket reaches keepAliveTimeout. Recorded, with a loose bound, so the figures show in the test log.
describe('baseline: server.close() / fastify.close() without leak-guard', function () {
  this.timeout(15_000)
  let app: ChildApp | undefined
  let c: RawClient | undefined

  afterEach(async () => {
    c?.destroy()
    if (app !== undefined) {
      app.kill('SIGKILL')
      await app.exited
      app = undefined
    }
  })

  for (const framework of ['express', 'koa', 'fastify']) {
    it(`${framework}: keeps the in-flight keep-alive socket until keepAliveTimeout`, async () => {
      app = new ChildApp('app.mjs', { LG_FRAMEWORK: framework, LG_MODE: 'plain-close', LG_KEEPALIVE: '1000' })
      const port = (await app.waitFor('listening')).port as number
      c = new RawClient(port)
      c.get('/slow?ms=400')
      await sleep(100)
      app.kill('SIGTERM')
      const [response] = await c.responses(1)
      expect(statusOf(response)).to.equal(200)
      const closed = (await app.waitFor('closed')).ms as number
      console.log(`      ${framework} + plain close: Connection: ${headerOf(response, 'connection')}; server closed ${closed} ms after SIGTERM (handler answered at ~300 ms, keepAliveTimeout 1000 ms)`)
      expect(headerOf(response, 'connection')).to.equal('keep-alive')
      expect(closed).to.be.at.least(1_000)
      expect((await app.exited).code).to.equal(0)
    })
  }
})
