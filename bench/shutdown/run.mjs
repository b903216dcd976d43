#!/usr/bin/env node
// Shutdown time with N keep-alive requests in flight: leak-guard's createShutdown() vs a plain
// server.close() vs Fastify's close() (with and without the leak-guard plugin's shutdown).
//
//   node bench/shutdown/run.mjs [--n 10,100] [--handler 200] [--keepalive 5000] [--runs 3] [--node 22|24|26]
//
// Each run: a server whose handler answers after --handler ms, N clients on their own keep-alive
// sockets each send one request, and once all N are in flight the shutdown starts. Measured: time
// from the start of the shutdown to the server's 'close' event, and failed requests. Server and
// clients share this process (127.0.0.1); the figures are dominated by timers, not by CPU.
import http from 'node:http'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { createShutdown, hardenServer } from '@leak-guard/core'
import { leakGuard as fastifyLeakGuard } from '@leak-guard/fastify'
import { onNodeLine } from '../../scripts/node-lines.mjs'

const { values } = parseArgs({
  args: onNodeLine(import.meta.url),
  options: {
    n: { type: 'string', default: '10,100' },
    handler: { type: 'string', default: '200' },
    keepalive: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '3' },
  },
})
const counts = values.n.split(',').map(Number)
const handlerMs = Number(values.handler)
const keepAliveTimeout = Number(values.keepalive)
const runs = Number(values.runs)

const slow = (res) => setTimeout(() => res.end('done'), handlerMs)

const kinds = {
  async 'node:http + server.close()'() {
    const server = http.createServer((_req, res) => slow(res))
    hardenServer(server, { keepAliveTimeout })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    return { server, stop: () => server.close() }
  },
  async 'node:http + leak-guard createShutdown()'() {
    const server = http.createServer((_req, res) => slow(res))
    hardenServer(server, { keepAliveTimeout })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    const shutdown = createShutdown(server, { gracePeriod: 10_000, forceAfter: 15_000 })
    return { server, stop: () => shutdown.close() }
  },
  async 'fastify.close()'() {
    const app = Fastify({ keepAliveTimeout })
    app.get('/', (_request, reply) => void setTimeout(() => reply.send('done'), handlerMs))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { server: app.server, stop: () => app.close() }
  },
  async 'fastify.close() + leak-guard plugin'() {
    const app = Fastify({ keepAliveTimeout })
    await app.register(fastifyLeakGuard, { timeout: false, shutdown: { gracePeriod: 10_000, forceAfter: 15_000 } })
    app.get('/', (_request, reply) => void setTimeout(() => reply.send('done'), handlerMs))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { server: app.server, stop: () => app.close() }
  },
}

async function once(kind, n) {
  const { server, stop } = await kinds[kind]()
  const { port } = server.address()
  const agent = new http.Agent({ keepAlive: true, maxSockets: n })
  let inFlight = 0
  let failed = 0
  let allSent
  const sent = new Promise((resolve) => (allSent = resolve))
  const requests = []
  for (let i = 0; i < n; i++) {
    requests.push(
      new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume()
          res.once('end', () => {
            if (res.statusCode !== 200) failed++
            resolve()
          })
        })
        req.once('error', () => {
          failed++
          resolve()
        })
      }),
    )
  }
  server.on('request', () => {
    if (++inFlight === n) allSent()
  })
  await sent
  const closed = new Promise((resolve) => server.once('close', resolve))
  const started = performance.now()
  void stop()
  await closed
  const ms = performance.now() - started
  await Promise.all(requests)
  agent.destroy()
  return { ms, failed }
}

const date = new Date().toISOString().slice(0, 10)
console.log(`shutdown benchmark — ${date}, Node ${process.version}, handler ${handlerMs} ms, keepAliveTimeout ${keepAliveTimeout} ms, median of ${runs} runs`)
console.log('')
console.log('| server | in-flight keep-alive requests | shutdown time (ms) | failed requests |')
console.log('|---|---:|---:|---:|')
for (const n of counts) {
  for (const kind of Object.keys(kinds)) {
    const results = []
    for (let r = 0; r < runs; r++) results.push(await once(kind, n))
    const sorted = results.map((x) => x.ms).sort((a, b) => a - b)
    const failed = results.reduce((s, x) => s + x.failed, 0)
    console.log(`| ${kind} | ${n} | ${Math.round(sorted[Math.floor(sorted.length / 2)])} | ${failed} |`)
  }
}
