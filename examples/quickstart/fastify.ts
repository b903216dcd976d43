import Fastify from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import leakGuard from '@leak-guard/fastify'

const app = Fastify()
await app.register(leakGuard, { timeout: 1_000 })

app.get('/slow', async (request) => {
  await sleep(10_000, undefined, { signal: request.scope.signal }) // aborted on timeout or disconnect
  return 'done'
})
app.get('/export', { config: { leakGuard: { timeout: 60_000 } } }, async () => 'a long export')

await app.listen({ port: Number(process.env.PORT ?? 3000) })
