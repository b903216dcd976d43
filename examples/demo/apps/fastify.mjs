// The demo app on Fastify 5: the same routes unguarded (framework defaults) and guarded (leak-guard).
import Fastify from 'fastify'
import { leakGuard } from '@leak-guard/fastify'

export async function build({ guarded, services, guardOptions, shutdownOptions }) {
  const app = Fastify()
  if (guarded) await app.register(leakGuard, { ...guardOptions, shutdown: shutdownOptions })

  app.get('/health', async () => 'ok')
  app.post('/ingest', async (request) => ({ received: Object.keys(request.body ?? {}).length }))
  app.get('/report', async (request) => services.report(request.query.id, request.scope))
  app.get('/proxy', async (request) => services.proxy(request.query.id, request.scope))
  app.get('/metrics', async (request, reply) => {
    reply.type('text/plain')
    return services.metrics(request.scope)
  })
  app.get('/chain', async (request) => services.chain(request.query.id, request.scope, Number(request.query.ms)))
  app.get('/export', async (request) => services.longExport(request.query.id, request.scope, Number(request.query.ms)))
  await app.ready()

  return {
    server: app.server,
    guard: guarded ? app.leakGuard : undefined,
    // The plugin drains fastify.server on app.close() / app.leakGuard.shutdown().
    ownsShutdown: guarded,
    listen: async () => {
      await app.listen({ port: 0, host: '127.0.0.1' })
      return app.server.address().port
    },
    close: () => app.close(),
  }
}
