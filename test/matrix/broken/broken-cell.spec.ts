import type { NextFunction, Request, Response } from 'express'
import express from 'express'
import * as real from '@leak-guard/express'
import { kitsFor, type ExpressAdapter } from '../../conformance/adapters.js'
import { defineConformance } from '../../conformance/suite.js'

// A deliberately broken Express adapter, kept only here: it moves disconnect detection from the
// response (core's `res` 'close' + `writableFinished`) to the request's 'close' event, the mistake
// nodejs/node#46666 and expressjs/express#6334 describe (`req` 'close' fires once the body was read).
// Loaded only by broken.test.ts, in a child mocha process: the suite must fail on it.

function leakGuard(options?: Parameters<typeof real.leakGuard>[0]): real.LeakGuardMiddleware {
  const inner = real.leakGuard(options)
  const broken = function brokenLeakGuard(req: Request, res: Response, next: NextFunction): void {
    inner(req, res, (error?: unknown) => {
      const listener = res.listeners('close').find((fn) => (fn as { name?: string }).name === 'onResponseClose') as
        | ((this: Response) => void)
        | undefined
      if (listener !== undefined) {
        res.removeListener('close', listener)
        req.once('close', () => listener.call(res))
      }
      next(error)
    })
  }
  Object.defineProperty(broken, 'guard', { value: inner.guard, enumerable: true })
  return broken as unknown as real.LeakGuardMiddleware
}

const brokenAdapter: ExpressAdapter = { ...real, leakGuard }

defineConformance(kitsFor({ express }, { expressAdapter: brokenAdapter, versions: { express: 'broken req-close adapter' } }))
