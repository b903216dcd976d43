import type { Server } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { hardenServer } from '@leak-guard/fastify'
import { createApp } from '../../examples/fastify/src/app.js'
import { startQuotesUpstream } from '../../examples/fastify/src/quotes-upstream.js'
import { exerciseExample } from './exercise.js'

describe('examples/fastify', () => {
  let upstream: { url: string; server: Server }
  let app: FastifyInstance
  let base: string

  beforeEach(async () => {
    upstream = await startQuotesUpstream(300)
    ;({ app } = await createApp({ upstreamUrl: upstream.url, timeout: 5_000, gracePeriod: 500, forceAfter: 1_000 }))
    hardenServer(app.server, { headersTimeout: 2_000, requestTimeout: 5_000 })
    base = await app.listen({ port: 0, host: '127.0.0.1' })
  })

  afterEach(async () => {
    await app.leakGuard.shutdown()
    upstream.server.closeAllConnections()
    await new Promise((resolve) => upstream.server.close(resolve))
  })

  exerciseExample(() => ({
    base,
    upstreamServer: upstream.server,
    // The plugin's shutdown option drains app.server; guard.shutdown() runs it (app.close() does too).
    shutdown: {
      close: () => app.leakGuard.shutdown(),
      get closing() {
        return app.leakGuard.closing
      },
    },
  }))
})
