// A stand-in for the quotes service the example calls, started on a random port when UPSTREAM_URL is not
// set, so the example runs with one command. It answers after a short delay, like a real network call.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export async function startQuotesUpstream(delay = 30): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const match = /^\/quotes\/([A-Za-z0-9.-]{1,12})$/.exec(req.url ?? '')
    if (match === null) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}')
      return
    }
    const timer = setTimeout(() => {
      const symbol = match[1]!.toUpperCase()
      const price = (symbol.split('').reduce((sum, c) => sum + c.charCodeAt(0), 0) % 500) + 10
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ symbol, price }))
    }, delay)
    res.once('close', () => clearTimeout(timer))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}
