import express from 'express'
import { leakGuard, leakGuardErrorHandler } from '@leak-guard/express'
import { createHttpClient } from '@leak-guard/core/client'

// A caller's Connect-Timeout-Ms or grpc-timeout shortens this service's own 5 s deadline (it can never
// lengthen it); 20 ms are kept for the answer to travel back.
const guarded = leakGuard({ timeout: 5_000, inboundDeadline: { headers: ['connect', 'grpc'], margin: 20 } })
// Calls made inside a request carry what is left of it, as Connect-Timeout-Ms (the default).
export const inventory = createHttpClient({ guard: guarded.guard, deadlineHeader: 'connect' })

export const app = express()
app.use(guarded)
app.post('/orders', async (req, res) => {
  // The budget is known up front: refuse work that cannot finish in time rather than start it.
  if (req.scope.remaining() < 200) {
    res.status(503).set('Retry-After', '1').json({ code: 'INSUFFICIENT_BUDGET' })
    return
  }
  const stock = await inventory.fetch(`${process.env.INVENTORY_SERVICE}/reserve`, { method: 'POST' })
  res.status(stock.status).json(await stock.json())
})
app.use(leakGuardErrorHandler())
