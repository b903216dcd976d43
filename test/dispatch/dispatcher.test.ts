import { expect } from 'chai'
import { AsyncLocalStorage } from 'node:async_hooks'
import { getEventListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDispatcher, createGuard, currentScope, type Dispatcher, type LeakEvent, type RequestScope } from '@leak-guard/core'
import { abortableSleep, baseline, deferred, leftovers, openRequest, scopedServer, waitFor } from './helpers.js'

type Closer = () => Promise<unknown> | void

describe('createDispatcher()', () => {
  const cleanup: Closer[] = []
  const track = <T extends Dispatcher>(d: T): T => {
    cleanup.push(() => d.destroy())
    return d
  }
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn()
  })

  describe('with invalid options', () => {
    const cases: Array<[string, unknown]> = [
      ['concurrency', 0],
      ['concurrency', 1.5],
      ['concurrency', '4'],
      ['maxQueue', -1],
      ['maxQueue', true],
      ['queueTimeout', 0],
      ['maxPerRequest', 0],
      ['closeTimeout', 0],
      ['guard', {}],
      ['concurency', 4],
    ]
    for (const [option, value] of cases) {
      it(`throws LG_ERR_INVALID_OPTION for ${option}: ${JSON.stringify(value)}`, () => {
        expect(() => createDispatcher({ [option]: value } as never))
          .to.throw()
          .with.property('code', 'LG_ERR_INVALID_OPTION')
      })
    }

    it('rejects a signal that is not an AbortSignal', async () => {
      const d = track(createDispatcher())
      const error = await d.run(async () => 1, { signal: 'x' as never }).catch((e: unknown) => e)
      expect(error).to.have.property('code', 'LG_ERR_INVALID_OPTION')
    })

    it('rejects run() with something that is not a function with LG_ERR_INVALID_OPTION, and counts nothing', async () => {
      const d = track(createDispatcher())
      const error = await d.run(42 as never).catch((e: unknown) => e)
      expect(error).to.have.property('code', 'LG_ERR_INVALID_OPTION')
      expect(error).to.have.property('option', 'fn')
      expect(d.stats()).to.include({ queued: 0, running: 0, completed: 0 })
    })
  })

  describe('when the queue is full', () => {
    it('rejects at once with LG_ERR_POOL_FULL, 503 and a Retry-After header, without running the task', async () => {
      const d = track(createDispatcher({ concurrency: 2, maxQueue: 3 }))
      const gate = deferred()
      const held = Array.from({ length: 5 }, () => d.run(() => gate.promise))
      let ran = false
      const started = performance.now()
      const error = await d
        .run(async () => {
          ran = true
        })
        .catch((e: unknown) => e)
      expect(performance.now() - started).to.be.below(20)
      expect(error).to.include({ code: 'LG_ERR_POOL_FULL', statusCode: 503, status: 503, expose: true })
      expect(error).to.have.nested.property('headers.Retry-After').that.matches(/^\d+$/)
      expect(ran).to.equal(false)
      expect(d.stats()).to.deep.include({ queued: 3, running: 2 })
      expect(d.stats().rejected.full).to.equal(1)
      gate.resolve()
      await Promise.all(held)
      expect(d.stats()).to.deep.include({ queued: 0, running: 0, completed: 5 })
    })

    it('computes Retry-After from queue depth × recent mean run time ÷ concurrency, bounded to 1–60 s', async () => {
      const d = track(createDispatcher({ concurrency: 1, maxQueue: 100 }))
      // Teach it a mean service time of ~60 ms.
      for (let i = 0; i < 3; i++) await d.run(() => sleep(60))
      const gate = deferred()
      const held = Array.from({ length: 101 }, () => d.run(() => gate.promise))
      const error = (await d.run(async () => 1).catch((e: unknown) => e)) as { retryAfter: number; headers: Record<string, string> }
      // (100 queued + 1) × ~60 ms ÷ 1 slot ≈ 6 s; allow for a slow, shared machine.
      expect(error.retryAfter).to.be.within(6, 12)
      expect(error.headers['Retry-After']).to.equal(String(error.retryAfter))
      gate.resolve()
      await Promise.all(held)
      expect(d.retryAfter()).to.be.within(1, 60)
    })
  })

  describe('with queueTimeout', () => {
    it('rejects a task that waited too long with LG_ERR_POOL_QUEUE_TIMEOUT and never runs it', async () => {
      const d = track(createDispatcher({ concurrency: 1, queueTimeout: 40 }))
      const gate = deferred()
      const holder = d.run(() => gate.promise)
      let ran = false
      const started = performance.now()
      const error = await d
        .run(async () => {
          ran = true
        })
        .catch((e: unknown) => e)
      const waited = performance.now() - started
      expect(error).to.include({ code: 'LG_ERR_POOL_QUEUE_TIMEOUT', statusCode: 503 })
      expect(error).to.have.nested.property('headers.Retry-After')
      expect(waited).to.be.within(35, 200)
      gate.resolve()
      await holder
      await sleep(5)
      expect(ran).to.equal(false)
      expect(d.stats().rejected.queueTimeout).to.equal(1)
    })
  })

  describe('with a signal of the caller', () => {
    it('drops a queued task whose signal aborts, with the signal reason, and removes its listener', async () => {
      const d = track(createDispatcher({ concurrency: 1 }))
      const gate = deferred()
      const holder = d.run(() => gate.promise)
      const controller = new AbortController()
      let ran = false
      const queued = d.run(
        async () => {
          ran = true
        },
        { signal: controller.signal },
      )
      expect(getEventListeners(controller.signal, 'abort')).to.have.length(1)
      const reason = new Error('stop')
      controller.abort(reason)
      expect(await queued.catch((e: unknown) => e)).to.equal(reason)
      expect(getEventListeners(controller.signal, 'abort')).to.have.length(0)
      gate.resolve()
      await holder
      expect(ran).to.equal(false)
      expect(d.stats()).to.deep.include({ queued: 0, running: 0 })
      expect(d.stats().rejected.aborted).to.equal(1)
    })

    it('honours a signal that is not Node’s AbortSignal (polyfill, other realm) while queued', async () => {
      // An EventTarget with `aborted`/`reason`, as abort-controller polyfills make them.
      class ForeignSignal extends EventTarget {
        aborted = false
        reason: unknown = undefined
        abort(reason: unknown): void {
          this.aborted = true
          this.reason = reason
          this.dispatchEvent(new Event('abort'))
        }
      }
      const d = track(createDispatcher({ concurrency: 1 }))
      const gate = deferred()
      const holder = d.run(() => gate.promise)
      const signal = new ForeignSignal()
      let ran = false
      const queued = d.run(
        async () => {
          ran = true
        },
        { signal: signal as unknown as AbortSignal },
      )
      expect(getEventListeners(signal, 'abort')).to.have.length(1)
      const reason = new Error('stop')
      signal.abort(reason)
      expect(await queued.catch((e: unknown) => e)).to.equal(reason)
      expect(getEventListeners(signal, 'abort')).to.have.length(0)
      gate.resolve()
      await holder
      expect(ran).to.equal(false)
      const late = await d.run(async () => 1, { signal: signal as unknown as AbortSignal }).catch((e: unknown) => e)
      expect(late).to.equal(reason)
    })

    it('hands the signal to the running task', async () => {
      const d = track(createDispatcher())
      const controller = new AbortController()
      const running = d.run((signal) => abortableSleep(5_000, signal), { signal: controller.signal })
      await sleep(5)
      controller.abort(new Error('stop'))
      expect(await running.catch((e: Error) => e.message)).to.equal('stop')
      expect(d.stats().aborted).to.equal(1)
    })
  })

  describe('inside a request', () => {
    let closeServer: (() => Promise<void>) | undefined
    afterEach(async () => {
      await closeServer?.()
      closeServer = undefined
    })

    it('never starts a task whose client left while it was queued, and aborts a running one within 50 ms', async () => {
      const d = track(createDispatcher({ concurrency: 1 }))
      const blocker = deferred()
      const holder = d.run(() => blocker.promise, { scope: null })
      let queuedRan = false
      let runningAbortedAt = 0
      let queuedOutcome: unknown
      const runningStarted = deferred()
      const app = await scopedServer((scope, req) => {
        if (req.url === '/queued') {
          d.run(async () => {
            queuedRan = true
          }).catch((e: unknown) => (queuedOutcome = e))
        } else {
          d.run((signal) => {
            runningStarted.resolve()
            return new Promise<void>((resolve) => {
              signal.addEventListener('abort', () => {
                runningAbortedAt = performance.now()
                resolve()
              })
            })
          }).catch(() => {})
        }
        void scope
      })
      closeServer = app.close
      const queuedClient = await openRequest(app.port, '/queued')
      await waitFor(() => d.stats().queued === 1)
      queuedClient.destroy()
      await waitFor(() => queuedOutcome !== undefined)
      expect(queuedOutcome).to.have.property('code', 'LG_ERR_CLIENT_CLOSED')
      blocker.resolve()
      await holder
      expect(queuedRan).to.equal(false)

      const runningClient = await openRequest(app.port, '/running')
      await runningStarted.promise
      const left = performance.now()
      runningClient.destroy()
      await waitFor(() => runningAbortedAt > 0, 1000)
      expect(runningAbortedAt - left).to.be.below(50)
      await waitFor(() => d.stats().running === 0)
      expect(d.stats().rejected.aborted).to.equal(1)
    })

    it('runs a queued task in its submitter’s context, not the context of the task that freed the slot', async () => {
      const d = track(createDispatcher({ concurrency: 1 }))
      const user = new AsyncLocalStorage<string>()
      const seen: Array<{ mine: boolean; user: string | undefined }> = []
      const firstStarted = deferred()
      const release = deferred()
      const app = await scopedServer((scope, req, res) => {
        const label = req.url!.slice(1)
        void user.run(label, async () => {
          const result = await d.run(async () => {
            if (label === 'first') {
              firstStarted.resolve()
              await release.promise
            }
            seen.push({ mine: currentScope() === scope, user: user.getStore() })
            return currentScope()?.url
          })
          res.end(result)
        })
      })
      closeServer = app.close
      const first = fetch(`http://127.0.0.1:${app.port}/first`).then((r) => r.text())
      await firstStarted.promise
      const second = fetch(`http://127.0.0.1:${app.port}/second`).then((r) => r.text())
      await waitFor(() => d.stats().queued === 1)
      release.resolve()
      expect(await first).to.equal('/first')
      expect(await second).to.equal('/second')
      expect(seen).to.deep.equal([
        { mine: true, user: 'first' },
        { mine: true, user: 'second' },
      ])
    })

    it('with maxPerRequest 4, runs at most 4 of one request’s 100 tasks while another request’s task starts at once', async () => {
      const d = track(createDispatcher({ concurrency: 6, maxPerRequest: 4, maxQueue: 200 }))
      let runningA = 0
      let maxA = 0
      let bStartedAfter = Infinity
      let aFinished = 0
      const app = await scopedServer((scope, req, res) => {
        if (req.url === '/a') {
          const tasks = Array.from({ length: 100 }, () =>
            d.run(async () => {
              runningA++
              maxA = Math.max(maxA, runningA)
              await sleep(5)
              runningA--
            }),
          )
          void Promise.all(tasks).then(() => {
            aFinished = performance.now()
            res.end('a')
          })
        } else {
          const submitted = performance.now()
          void Promise.all(
            Array.from({ length: 3 }, () =>
              d.run(async () => {
                bStartedAfter = Math.min(bStartedAfter, performance.now() - submitted)
                await sleep(5)
              }),
            ),
          ).then(() => res.end('b'))
        }
        void scope
      })
      closeServer = app.close
      const a = fetch(`http://127.0.0.1:${app.port}/a`).then((r) => r.text())
      await waitFor(() => d.stats().queued > 50)
      const b = fetch(`http://127.0.0.1:${app.port}/b`).then((r) => r.text())
      const bDone = await b.then(() => performance.now())
      expect(await a).to.equal('a')
      expect(maxA).to.equal(4)
      expect(bStartedAfter).to.be.below(30)
      // B did not wait for A's queue to drain.
      expect(bDone).to.be.below(aFinished)
    })

    it('reports a task still running leakGracePeriod after its request ended as a leak of kind task', async () => {
      const leaks: LeakEvent[] = []
      const stop = deferred()
      const scopes: RequestScope[] = []
      let d: Dispatcher | undefined
      const app = await scopedServer(
        (scope, _req, res) => {
          scopes.push(scope)
          // Ignores its signal on purpose.
          void d!.run(() => stop.promise).catch(() => {})
          res.end('ok')
        },
        { leakGracePeriod: 30, captureStacks: true },
      )
      closeServer = app.close
      d = track(createDispatcher({ concurrency: 2, guard: app.guard }))
      app.guard.on('leak', (event: LeakEvent) => leaks.push(event))
      expect(await fetch(`http://127.0.0.1:${app.port}/`).then((r) => r.text())).to.equal('ok')
      await waitFor(() => leaks.length === 1, 1000)
      expect(leaks[0]).to.include({ kind: 'task', scopeId: scopes[0]!.id })
      // With captureStacks the report names where the task was submitted: this file.
      expect(leaks[0]!.stack).to.match(/dispatcher\.test\.ts:\d+/)
      stop.resolve()
      await waitFor(() => d!.stats().running === 0)
      await sleep(50)
      expect(leaks).to.have.length(1)
    })
  })

  describe('close() and destroy()', () => {
    it('close() waits for running tasks, then resolves; run() afterwards rejects with LG_ERR_POOL_CLOSED', async () => {
      const d = createDispatcher({ concurrency: 2 })
      const done: number[] = []
      const tasks = [1, 2, 3].map((n) => d.run(() => sleep(20).then(() => done.push(n))))
      const closing = d.close()
      expect(d.close()).to.equal(closing)
      expect(await d.run(async () => 1).catch((e: unknown) => e)).to.have.property('code', 'LG_ERR_POOL_CLOSED')
      await closing
      await Promise.all(tasks)
      expect(done).to.have.members([1, 2, 3])
      expect(d.destroyed).to.equal(true)
    })

    it('close() with tasks still running resolves within closeTimeout and leaves no timer or listener behind', async () => {
      const before = await baseline()
      const guard = createGuard()
      const d = createDispatcher({ concurrency: 2, closeTimeout: 60, queueTimeout: 5_000, guard })
      expect(guard.resources()).to.include(d)
      const outer = new AbortController()
      const running = [
        d.run((signal) => abortableSleep(10_000, signal)),
        d.run((signal) => abortableSleep(10_000, signal), { signal: outer.signal }),
      ]
      const queued = d.run((signal) => abortableSleep(10_000, signal), { signal: outer.signal })
      // leak-guard listens (with the task object itself) while the task waits.
      expect(getEventListeners(outer.signal, 'abort').filter((l) => typeof l !== 'function')).to.have.length(1)
      const started = performance.now()
      await d.close()
      const took = performance.now() - started
      expect(took).to.be.within(50, 300)
      for (const p of [...running, queued]) expect(await p.catch((e: unknown) => e)).to.have.property('code', 'LG_ERR_POOL_CLOSED')
      expect(guard.resources()).to.not.include(d)
      expect(getEventListeners(outer.signal, 'abort').filter((l) => typeof l !== 'function')).to.have.length(0)
      // The task holding the caller's own signal keeps running until that signal aborts.
      outer.abort()
      await sleep(5)
      expect(leftovers(before)).to.deep.equal({})
      expect(d.stats()).to.deep.include({ queued: 0, running: 0 })
      expect(d.stats().rejected.closed).to.equal(1)
    })

    it('destroy() is idempotent and aborts the signal of running tasks at once', async () => {
      const d = createDispatcher()
      let abortedAt = 0
      const task = d.run(
        (signal) =>
          new Promise<void>((resolve) =>
            signal.addEventListener('abort', () => {
              abortedAt = performance.now()
              resolve()
            }),
          ),
      )
      const started = performance.now()
      const first = d.destroy()
      expect(d.destroy()).to.equal(first)
      await first
      expect(abortedAt).to.be.greaterThan(0)
      expect(abortedAt - started).to.be.below(20)
      expect(await task.catch((e: unknown) => e)).to.have.property('code', 'LG_ERR_POOL_CLOSED')
      expect(await d.close().then(() => 'closed')).to.equal('closed')
    })

    it('is closed by the guard’s shutdown', async () => {
      const guard = createGuard()
      const d = createDispatcher({ guard })
      await guard.shutdown()
      expect(d.closed).to.equal(true)
      expect(await d.run(async () => 1).catch((e: unknown) => e)).to.have.property('code', 'LG_ERR_POOL_CLOSED')
    })
  })

  describe('stats()', () => {
    it('counts completed, failed, waits and run times', async () => {
      const d = track(createDispatcher({ concurrency: 1 }))
      await Promise.allSettled([d.run(() => sleep(15)), d.run(() => sleep(15)), d.run(() => Promise.reject(new Error('x')))])
      const s = d.stats()
      expect(s).to.deep.include({ queued: 0, running: 0, completed: 3, failed: 1, aborted: 0 })
      expect(s.meanRunMs).to.be.within(5, 100)
      expect(s.meanWaitMs).to.be.within(5, 100)
    })
  })
})
