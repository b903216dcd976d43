import { defineConformance } from './suite.js'
import { kits } from './adapters.js'

// The default cell: Express 5, Koa 3 and Fastify 5 from the test package, on node:http, HTTP/1.1.
// The other cells: test/matrix (Express 4, Koa 2, Fastify 4) and test/http2.
defineConformance(kits)
