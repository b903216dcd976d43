// The upstream service the demo apps call — a stand-in for a database or a downstream API, run as a
// child process. `GET /work?ms=&id=&kind=` holds the request for `ms` milliseconds, like a query, and
// stops early when its caller hangs up, like a database that cancels the query of a closed connection.
// It counts work started, completed and aborted, and the sockets opened to it; the demo reads the
// counters over IPC, so reading them opens no socket.
import { createServer } from 'node:http'

const sockets = new Set()
let counters
let work
function reset() {
  counters = { started: 0, completed: 0, aborted: 0, socketsOpened: 0, socketsPeak: sockets.size }
  work = []
}


const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://upstream')
  if (url.pathname !== '/work') {
    res.writeHead(404).end()
    return
  }
  const ms = Number(url.searchParams.get('ms') ?? 100)
  const item = { id: url.searchParams.get('id'), kind: url.searchParams.get('kind'), startedAt: Date.now(), completedAt: undefined, abortedAt: undefined }
  counters.started++
  work.push(item)
  const timer = setTimeout(() => {
    item.completedAt = Date.now()
    counters.completed++
    res.writeHead(200, { 'content-type': 'application/json' })
    // A body big enough that a caller who never reads it keeps the connection busy.
    res.end(JSON.stringify({ id: item.id, kind: item.kind, rows: Array.from({ length: 200 }, (_, i) => ({ i, value: 'x'.repeat(40) })) }))
  }, ms)
  res.once('close', () => {
    if (item.completedAt !== undefined) return
    clearTimeout(timer)
    item.abortedAt = Date.now()
    counters.aborted++
  })
})
server.keepAliveTimeout = 30_000
server.on('connection', (socket) => {
  sockets.add(socket)
  counters.socketsOpened++
  if (sockets.size > counters.socketsPeak) counters.socketsPeak = sockets.size
  socket.once('close', () => sockets.delete(socket))
})

reset()
process.on('message', (message) => {
  if (message?.type === 'stats') {
    process.send({ id: message.id, counters: { ...counters, socketsOpen: sockets.size, running: counters.started - counters.completed - counters.aborted }, work: message.withWork ? work : undefined })
  } else if (message?.type === 'reset') {
    // Idle keep-alive sockets left by an earlier incident would blur this one's count; sockets that
    // stay open count towards the next peak.
    server.closeIdleConnections()
    setTimeout(() => {
      reset()
      process.send({ id: message.id })
    }, 20)
  }
})
process.on('disconnect', () => process.exit(0))

server.listen(0, '127.0.0.1', () => {
  process.send({ type: 'ready', url: `http://127.0.0.1:${server.address().port}` })
})
