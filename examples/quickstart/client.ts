import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createGuard } from '@leak-guard/core'
import { createHttpClient } from '@leak-guard/core/client'

// A stand-in upstream on a free local port.
const upstream = createServer((_req, res) => res.end(JSON.stringify({ id: 7 }))).listen(0, '127.0.0.1')
await once(upstream, 'listening')
const { port } = upstream.address() as AddressInfo

const guard = createGuard()
const client = createHttpClient({ connections: 16, maxQueue: 64, guard })
// Inside a request, the call also carries the request's signal and remaining deadline.
const res = await client.fetch(`http://127.0.0.1:${port}/users/7`)
console.log(await res.json())

await guard.shutdown() // closes the client with the guard
upstream.close()
