import Koa from 'koa'
import Router from '@koa/router'
import { setTimeout as sleep } from 'node:timers/promises'
import { leakGuard, withTimeout } from '@leak-guard/koa'

const app = new Koa()
const router = new Router()
app.use(leakGuard({ timeout: 1_000 })) // first: it races the rest of the chain against the deadline

router.get('/slow', async (ctx) => {
  await sleep(10_000, undefined, { signal: ctx.signal }) // aborted on timeout or disconnect
  ctx.body = 'done'
})
router.get('/export', withTimeout(60_000), (ctx) => {
  ctx.body = 'a long export'
})

app.use(router.routes())
app.listen(Number(process.env.PORT ?? 3000))
