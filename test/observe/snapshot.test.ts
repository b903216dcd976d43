import { expect } from 'chai'
import { once } from 'node:events'
import { fork } from 'node:child_process'
import type { Server } from 'node:http'
import { fileURLToPath } from 'node:url'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import { leakGuard as expressLeakGuard } from '@leak-guard/express'
import { leakGuard as fastifyLeakGuard } from '@leak-guard/fastify'
import { ShutdownError, createDebugHandler, dumpOnSignal, formatSnapshot, type Guard, type GuardSnapshot, type LeakEvent } from '@leak-guard/core'
import { send } from '../helpers/http.js'

const thisFile = fileURLToPath(import.meta.url)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(check: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await sleep(5)
  }
}

describe('observe: spawn leaks, snapshot and dumps', () => {
  let app: FastifyInstance | undefined
  let server: Server | undefined
  let guards: Guard[] = []

  afterEach(async () => {
    if (app !== undefined) await app.close()
    if (server !== undefined) {
      server.closeAllConnections()
      await new Promise((resolve) => server!.close(resolve))
    }
    app = server = undefined
    for (const guard of guards) guard.dispose()
    guards = []
  })

  async function expressApp(options: Parameters<typeof expressLeakGuard>[0], mount: (app: express.Express, guard: Guard) => void): Promise<{ port: number; guard: Guard }> {
    const mw = expressLeakGuard(options)
    guards.push(mw.guard)
    const ex = express()
    ex.use(mw)
    mount(ex, mw.guard)
    server = ex.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return { port: (server.address() as { port: number }).port, guard: mw.guard }
  }

  describe('when a spawned task ignores its signal', () => {
    it('is reported once, after the grace period, with why the request ended', async () => {
      let taskDone = false
      const { port, guard } = await expressApp({ leakGracePeriod: 60, captureStacks: true }, (ex) => {
        ex.get('/spawn', (req, res) => {
          void req.scope.spawn(async () => {
            await sleep(300) // ignores the signal SPAWN-IGNORES-SIGNAL
            taskDone = true
          })
          res.send('ok')
        })
      })
      const events: Array<LeakEvent & { at: number }> = []
      guard.on('leak', (event: LeakEvent) => events.push({ ...event, at: performance.now() }))
      const started = performance.now()
      await send(port, { path: '/spawn' })
      await sleep(30)
      expect(events, 'reported before the grace period').to.have.length(0)
      await waitFor(() => events.length > 0)
      expect(events[0].at - started).to.be.at.least(55)
      expect(events[0].kind).to.equal('spawn')
      expect(events[0].reason).to.equal('LG_ERR_REQUEST_ENDED')
      expect(events[0].lateBy).to.be.at.least(50)
      expect(events[0].stack).to.include(thisFile)
      await waitFor(() => taskDone)
      await sleep(20)
      expect(events).to.have.length(1)
      expect(guard.stats().leaks.spawn).to.equal(1)
    })

    it('says LG_ERR_TIMEOUT when the request timed out', async () => {
      const { port, guard } = await expressApp({ timeout: 30, leakGracePeriod: 40 }, (ex) => {
        ex.get('/slow', async (req, res) => {
          void req.scope.spawn(() => sleep(250))
          await sleep(120)
          res.send('late')
        })
      })
      const events: LeakEvent[] = []
      guard.on('leak', (event: LeakEvent) => events.push(event))
      const res = await send(port, { path: '/slow' })
      expect(res.status).to.equal(503)
      await waitFor(() => events.some((e) => e.kind === 'spawn'))
      const spawned = events.filter((e) => e.kind === 'spawn')
      expect(spawned).to.have.length(1)
      expect(spawned[0].reason).to.equal('LG_ERR_TIMEOUT')
      await sleep(250)
      expect(events.filter((e) => e.kind === 'spawn')).to.have.length(1)
    })

    it('is not reported when the task honours its signal', async () => {
      let aborted = false
      const { port, guard } = await expressApp({ leakGracePeriod: 30 }, (ex) => {
        ex.get('/good', (req, res) => {
          void req.scope.spawn(
            (signal) =>
              new Promise<void>((resolve) => {
                const timer = setTimeout(resolve, 300)
                signal.addEventListener('abort', () => {
                  aborted = true
                  clearTimeout(timer)
                  resolve()
                })
              }),
          )
          res.send('ok')
        })
      })
      await send(port, { path: '/good' })
      await sleep(100)
      expect(aborted).to.equal(true)
      expect(guard.stats().leaks.spawn).to.equal(0)
    })
  })

  describe('snapshot() under 20 concurrent slow requests', () => {
    it('lists exactly those 20 with plausible ages, then is empty', async () => {
      app = Fastify()
      await app.register(fastifyLeakGuard, { timeout: 5_000 })
      guards.push(app.leakGuard)
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      app.get('/slow/:n', async (request) => {
        await gate
        return { n: (request.params as { n: string }).n }
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      const port = (app.server.address() as { port: number }).port
      const guard = app.leakGuard
      const sentAt = performance.now()
      const replies = Array.from({ length: 20 }, (_, i) => send(port, { path: `/slow/${i}` }))
      await waitFor(() => guard.size === 20)
      await sleep(40)
      const elapsed = performance.now() - sentAt
      const snap = guard.snapshot()
      expect(snap.inFlight).to.equal(20)
      expect(snap.scopes).to.have.length(20)
      expect(new Set(snap.scopes.map((s) => s.id)).size).to.equal(20)
      expect(snap.scopes.map((s) => s.url).sort()).to.deep.equal(Array.from({ length: 20 }, (_, i) => `/slow/${i}`).sort())
      for (const s of snap.scopes) {
        expect(s.method).to.equal('GET')
        expect(s.route).to.equal('/slow/:n')
        expect(s.state).to.equal('running')
        expect(s.reason).to.equal(null)
        expect(s.age).to.be.at.least(35).and.at.most(elapsed + 5)
        expect(s.remaining).to.be.at.most(5_000 - 35).and.at.least(5_000 - elapsed - 5)
        expect(s.tasks).to.deep.equal([])
      }
      expect(JSON.parse(JSON.stringify(snap))).to.deep.equal(snap)
      const text = formatSnapshot(snap)
      expect(text).to.include('20 request(s): GET /slow/:n [running]')
      expect(text.match(/^ {2}request \d+ \[/gm)).to.have.length(20)
      release()
      const done = await Promise.all(replies)
      expect(done.map((r) => r.status)).to.deep.equal(Array(20).fill(200))
      await waitFor(() => guard.size === 0)
      expect(guard.snapshot().scopes).to.deep.equal([])
    })
  })

  describe('createDebugHandler()', () => {
    it('answers a text dump grouped by route and state, and JSON on request, without its own request', async () => {
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const { port, guard } = await expressApp({ captureStacks: true }, (ex, g) => {
        ex.get('/debug/requests', createDebugHandler(g))
        ex.get('/work', async (req, res) => {
          void req.scope.spawn(() => gate)
          await gate
          res.send('ok')
        })
        ex.get('/other', async (_req, res) => {
          await gate
          res.send('ok')
        })
      })
      const replies = [send(port, { path: '/work' }), send(port, { path: '/work' }), send(port, { path: '/other' })]
      await waitFor(() => guard.size === 3)
      // One request aborted but not yet closed: shown as aborted-draining with its reason.
      const other = [...guard.scopes()].find((s) => s.url === '/other')!
      other.abort(new ShutdownError())

      const text = await send(port, { path: '/debug/requests' })
      expect(text.status).to.equal(200)
      expect(text.headers['content-type']).to.match(/^text\/plain/)
      expect(text.headers['cache-control']).to.equal('no-store')
      expect(text.body).to.match(/3 request\(s\) in flight/)
      // Grouped by the route Express matched.
      expect(text.body).to.include('2 request(s): GET /work [running]')
      expect(text.body).to.include('1 request(s): GET /other [aborted-draining, LG_ERR_SHUTDOWN]')
      expect(text.body).to.match(/ {4}spawn \[\d+ ms\]\n {8}at .*snapshot\.test\.ts:\d+/)
      expect(text.body).to.not.include('/debug/requests')

      const json = await send(port, { path: '/debug/requests?format=json' })
      expect(json.headers['content-type']).to.match(/^application\/json/)
      const snap = JSON.parse(json.body) as GuardSnapshot
      expect(snap.scopes.map((s) => s.url).sort()).to.deep.equal(['/other', '/work', '/work'])
      expect(snap.scopes.find((s) => s.url === '/other')).to.include({ state: 'aborted-draining', reason: 'LG_ERR_SHUTDOWN' })
      expect(snap.scopes.filter((s) => s.url === '/work').map((s) => s.tasks.length)).to.deep.equal([1, 1])
      release()
      await Promise.all(replies)
    })

    it('rejects something that is not a guard', () => {
      expect(() => createDebugHandler({} as Guard)).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    })
  })

  describe('dumpOnSignal()', () => {
    it('writes the text dump to stderr on SIGUSR2 in a child process, and stops when disposed', async function () {
      this.timeout(20_000)
      const child = fork(fileURLToPath(new URL('./fixtures/dump-child.mjs', import.meta.url)), [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] })
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      const [ready] = (await once(child, 'message')) as [{ pid: number }]
      expect(ready.pid).to.equal(child.pid)
      process.kill(child.pid!, 'SIGUSR2')
      await waitFor(() => stderr.includes('request(s) in flight'), 5000)
      expect(stderr).to.include('1 request(s): GET /hang [running]')
      expect(stderr).to.match(/request \d+ \[\d+ ms, \d+ ms left, 0 task\(s\)\]: GET \/hang/)
      child.send('dispose')
      const [code, signal] = (await once(child, 'exit')) as [number | null, string | null]
      // After dispose the signal's default action (terminate) applies again: the child dies by SIGUSR2.
      expect({ code, signal }).to.deep.equal({ code: null, signal: 'SIGUSR2' })
    })

    it('rejects an invalid signal name', () => {
      const mw = expressLeakGuard()
      guards.push(mw.guard)
      expect(() => dumpOnSignal(mw.guard, { signal: 'USR2' as NodeJS.Signals })).to.throw().with.property('code', 'LG_ERR_INVALID_OPTION')
    })
  })
})
