// Starts the example: a hardened server with graceful shutdown on SIGTERM/SIGINT.
//   PORT=3000 UPSTREAM_URL=http://quotes.internal pnpm start
import { hardenServer } from '@leak-guard/fastify'
import { createApp } from './app.js'
import { startQuotesUpstream } from './quotes-upstream.js'

const stub = process.env.UPSTREAM_URL ? undefined : await startQuotesUpstream()
const { app } = await createApp({ upstreamUrl: process.env.UPSTREAM_URL ?? stub!.url })

// Fastify creates the server; harden it before it listens.
hardenServer(app.server, { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 65_000 })
const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
console.log(`listening on ${address}`)

// On SIGTERM/SIGINT: app.close() runs leak-guard's drain (readiness 503 at once, abort at 10 s, force at
// 15 s); the client and thread pool close with the guard.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, async () => {
    const started = Date.now()
    await app.close()
    stub?.server.close()
    stub?.server.closeAllConnections()
    console.log(`shut down in ${Date.now() - started} ms`)
  })
}
