import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { Agent, createServer, type Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'chai'
import express from 'express'
import type { Request, Response } from 'express'
import { leakGuard, type LeakGuardMiddleware } from '@leak-guard/express'
import { captureProcessNoise, rawRequest, rawSocket, send } from '../../helpers/http.js'

// Express 4 ignores the promise a handler returns. leak-guard's own aborts must not turn into
// unhandled rejections (Node exits on them); every other rejection stays unhandled, as Express 4 users
// know it. No leakGuardErrorHandler() here: the plain Express 4 app of a new user.

describe('@leak-guard/express on Express 4: rejections of async handlers', () => {
  let server: Server | undefined
  let middleware: LeakGuardMiddleware
  let started: Promise<void>
  let markStarted: () => void
  const rejections: unknown[] = []
  const onRejection = (reason: unknown): void => {
    if (!rejections.includes(reason)) rejections.push(reason) // mocha re-emits what it sees
  }

  beforeEach(async () => {
    rejections.length = 0
    process.on('unhandledRejection', onRejection)
    started = new Promise((resolve) => (markStarted = resolve))
    const app = express()
    app.set('env', 'test') // the final handler's 500s are expected here: keep it from printing them
    middleware = leakGuard({ timeout: 100, leakGracePeriod: 20 })
    app.use(middleware)
    app.get('/sleep', async (req: Request, res: Response) => {
      markStarted()
      await sleep(5_000, undefined, { signal: req.signal })
      res.send('done')
    })
    app.get('/bug', async () => {
      await sleep(1)
      throw new Error('a bug of the app')
    })
    app.get('/sync-bug', () => {
      throw new Error('a synchronous bug')
    })
    app.get('/ok', (_req, res) => {
      res.send('ok')
    })
    server = createServer(app).listen(0, '127.0.0.1')
    await once(server, 'listening')
  })

  afterEach(async () => {
    process.off('unhandledRejection', onRejection)
    server?.closeAllConnections()
    await new Promise((resolve) => server?.close(resolve))
    server = undefined
  })

  const port = (): number => (server!.address() as AddressInfo).port

  it('runs on Express 4', () => {
    expect(express.application).to.have.property('lazyrouter')
  })

  it('drops the AbortError of a timed-out handler: 503, no unhandled rejection, the keep-alive connection still serves', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const leaks: unknown[] = []
    middleware.guard.on('leak', (event) => leaks.push(event))
    try {
      const noise = captureProcessNoise()
      const reply = await send(port(), { path: '/sleep', agent })
      expect(reply.status).to.equal(503)
      await sleep(50)
      const next = await send(port(), { path: '/ok', agent })
      expect(next.status).to.equal(200)
      expect(next.reusedSocket).to.equal(true)
      expect(noise.stop()).to.deep.equal([])
      expect(rejections).to.deep.equal([])
      // The handler stopped at the abort, within the grace period: honoured its signal, no late work.
      expect(leaks).to.deep.equal([])
      expect(middleware.guard.stats().ended.timeout).to.equal(1)
    } finally {
      agent.destroy()
    }
  })

  it('drops the AbortError of a handler whose client left', async () => {
    const noise = captureProcessNoise()
    const socket = await rawSocket(port(), rawRequest('GET', '/sleep', 'gone'))
    await started
    socket.destroy()
    await sleep(50)
    expect(noise.stop()).to.deep.equal([])
    expect(rejections).to.deep.equal([])
    expect(middleware.guard.stats().ended['client-closed']).to.equal(1)
  })

  it('leaves any other rejection unhandled, with its own reason, as Express 4 does', async () => {
    const noise = captureProcessNoise()
    const reply = send(port(), { path: '/bug' })
    await sleep(50)
    noise.stop()
    expect(rejections).to.have.length(1)
    expect((rejections[0] as Error).message).to.equal('a bug of the app')
    server!.closeAllConnections()
    await reply.catch(() => {})
  })

  it('still hands a synchronous throw to next(), i.e. a 500 from the final handler', async () => {
    const noise = captureProcessNoise()
    const reply = await send(port(), { path: '/sync-bug' })
    noise.stop()
    expect(reply.status).to.equal(500)
    expect(rejections).to.deep.equal([])
  })
})
