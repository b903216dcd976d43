// Starts the example: a hardened server with graceful shutdown on SIGTERM/SIGINT.
//   PORT=3000 UPSTREAM_URL=http://quotes.internal pnpm start
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createShutdown, hardenServer } from '@leak-guard/koa'
import { createApp } from './app.js'
import { startQuotesUpstream } from './quotes-upstream.js'

const stub = process.env.UPSTREAM_URL ? undefined : await startQuotesUpstream()
const { app, guard } = createApp({ upstreamUrl: process.env.UPSTREAM_URL ?? stub!.url })

const server = createServer(app.callback())
hardenServer(server, { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 65_000 })
server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
  const { address, port } = server.address() as AddressInfo
  console.log(`listening on http://${address}:${port}`)
})

// On SIGTERM/SIGINT: readiness answers 503 at once, in-flight requests get 10 s and are then aborted,
// connections still open at 15 s are destroyed; the client and thread pool close with the guard.
const shutdown = createShutdown(server, { guard, gracePeriod: 10_000, forceAfter: 15_000 })
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, async () => {
    const summary = await shutdown.close()
    stub?.server.close()
    stub?.server.closeAllConnections()
    console.log(`shut down in ${summary.durationMs} ms: ${summary.drained} drained, ${summary.aborted} aborted, ${summary.forced} forced`)
  })
}
