// Local upstream for the client benchmark, run in its own process so it does not share the
// benchmark's event loop. Answers every request with a small body; prints its port on stdout.
import http from 'node:http'

const body = Buffer.from(JSON.stringify({ ok: true, items: [1, 2, 3, 4, 5, 6, 7, 8] }))
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
  res.end(body)
})
server.keepAliveTimeout = 10_000
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: server.address().port })
})
process.on('disconnect', () => process.exit(0))
