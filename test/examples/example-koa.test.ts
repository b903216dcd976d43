import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createShutdown, hardenServer } from '@leak-guard/koa'
import { createApp } from '../../examples/koa/src/app.js'
import { startQuotesUpstream } from '../../examples/koa/src/quotes-upstream.js'
import { exerciseExample } from './exercise.js'

describe('examples/koa', () => {
  let upstream: { url: string; server: Server }
  let server: Server
  let shutdown: ReturnType<typeof createShutdown>

  beforeEach(async () => {
    upstream = await startQuotesUpstream(300)
    const { app, guard } = createApp({ upstreamUrl: upstream.url, timeout: 5_000 })
    server = createServer(app.callback())
    hardenServer(server, { headersTimeout: 2_000, requestTimeout: 5_000 })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    shutdown = createShutdown(server, { guard, gracePeriod: 500, forceAfter: 1_000 })
  })

  afterEach(async () => {
    await shutdown.close()
    upstream.server.closeAllConnections()
    await new Promise((resolve) => upstream.server.close(resolve))
  })

  exerciseExample(() => ({ base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, shutdown, upstreamServer: upstream.server }))
})
