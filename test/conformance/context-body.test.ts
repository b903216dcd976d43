import { expect } from 'chai'
import { once } from 'node:events'
import { createServer, request } from 'node:http'
import express from 'express'
import { currentScope } from '@leak-guard/core'
import { leakGuard } from '@leak-guard/express'
import { setTimeout as sleep } from 'node:timers/promises'
import { kits, type Harness } from './adapters.js'

// Body parsers read the request from socket events, which run in the connection's async context, not
// the request's. When the body arrives after the handler chain started (a slow upload), the parser calls
// the rest of the chain from those events; the adapters re-enter the request's scope there.
for (const kit of kits) {
  describe(`currentSignal() on ${kit.name} after a body that arrived late`, () => {
    let h: Harness | undefined
    afterEach(async () => {
      await h?.close()
      h = undefined
    })

    it('is still the signal of the request in the handler', async () => {
      h = await kit.start({ timeout: 5_000 })
      const ids = ['late-a', 'late-b', 'late-c']
      const replies = await Promise.all(
        ids.map(
          (id, i) =>
            new Promise<string>((resolve, reject) => {
              const body = JSON.stringify({ pad: 'x'.repeat(2000), i })
              const req = request(
                { host: '127.0.0.1', port: h!.port, method: 'POST', path: '/context', agent: false, headers: { 'x-id': id, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
                (res) => {
                  let text = ''
                  res.setEncoding('utf8')
                  res.on('data', (chunk: string) => (text += chunk))
                  res.on('end', () => resolve(text))
                },
              )
              req.on('error', reject)
              req.flushHeaders()
              // The headers go first; the body follows once the server has started the request.
              void sleep(30 + 10 * i).then(() => req.end(body))
            }),
        ),
      )
      for (const text of replies) expect(JSON.parse(text)).to.deep.equal({ ok: true, checks: 6 })
    })
  })
}

describe('currentScope() on express after a hand-written body reader', () => {
  it('is the request scope in the handler the reader calls from the stream\'s end event', async () => {
    const app = express()
    app.use(leakGuard({ timeout: 5_000 }))
    // Reads the body with plain listeners and calls next() from 'end', as older parsers do (no AsyncResource).
    app.use((req, _res, next) => {
      let size = 0
      req.on('data', (chunk: Buffer) => (size += chunk.length))
      req.on('end', () => next())
    })
    app.post('/', (req, res) => {
      res.json({ same: currentScope() === req.scope })
    })
    const server = createServer(app).listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const port = (server.address() as { port: number }).port
      const text = await new Promise<string>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: { 'content-length': '5' } }, (res) => {
          let out = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (out += chunk))
          res.on('end', () => resolve(out))
        })
        req.on('error', reject)
        req.flushHeaders()
        void sleep(30).then(() => req.end('hello'))
      })
      expect(JSON.parse(text)).to.deep.equal({ same: true })
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})
