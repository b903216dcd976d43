import { expect } from 'chai'
import express from 'express'
import request from 'supertest'
import { leakGuard } from '@leak-guard/express'

describe('smoke', () => {
  it('answers 503 when the handler outlives the timeout', async () => {
    const app = express()
    const mw = leakGuard({ timeout: 50 })
    app.use(mw)
    let abortedCode: string | undefined
    app.get('/slow', async (req, res) => {
      await new Promise((r) => setTimeout(r, 100))
      abortedCode = (req.signal.reason as { code?: string })?.code
      res.send('late')
    })
    const res = await request(app).get('/slow')
    expect(res.status).to.equal(503)
    expect(res.headers['retry-after']).to.equal('1')
    await new Promise((r) => setTimeout(r, 80))
    expect(abortedCode).to.equal('LG_ERR_TIMEOUT')
    expect(mw.guard.size).to.equal(0)
  })
})
