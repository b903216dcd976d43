// The demo's clients: a one-shot HTTP request that never throws, a slow "trickling" client on a raw
// socket, a closed-loop load generator, and a percentile. All traffic goes to 127.0.0.1 and every loop is
// bounded by a deadline.
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Sends one request and resolves — never rejects — with `{ status, ms, headers, error }`. `error` is the
 * error code (`ECONNRESET`, `ECONNREFUSED`, `TIMEOUT`, …) when no complete answer arrived.
 * `leaveAfter` (ms) makes the client hang up early, like a caller whose own timeout fired; `onLeave`
 * is then called with the time it left.
 */
export function send(port, path, { method = 'GET', agent = false, timeout = 5_000, headers, body, leaveAfter, onLeave } = {}) {
  const started = performance.now()
  return new Promise((resolve) => {
    let settled = false
    const finish = (result) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      clearTimeout(leaveTimer)
      resolve({ status: 0, headers: {}, error: undefined, ...result, ms: performance.now() - started })
    }
    const req = httpRequest({ host: '127.0.0.1', port, path, method, agent, headers }, (res) => {
      res.resume()
      res.once('end', () => finish({ status: res.statusCode, headers: res.headers }))
      res.once('error', (error) => finish({ error: error.code ?? 'ERROR' }))
      res.once('aborted', () => finish({ error: 'ECONNRESET' }))
    })
    // `reused`: the request went out on a kept-alive socket and failed before any answer: the server
    // closed that idle socket as the request was sent. Node's docs and Go's client treat that as safe to
    // retry for idempotent requests.
    req.once('error', (error) => finish({ error: error.code ?? error.message, reused: req.reusedSocket }))
    const timer = setTimeout(() => {
      req.destroy()
      finish({ error: 'TIMEOUT' })
    }, timeout)
    const leaveTimer =
      leaveAfter === undefined
        ? undefined
        : setTimeout(() => {
            onLeave?.(Date.now())
            req.destroy()
            finish({ error: 'LEFT' })
          }, leaveAfter)
    req.end(body)
  })
}

const trickleStarts = {
  // Half a request line and headers, one more header line per tick, never the blank line.
  headers: (port) => `GET /health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUser-Agent: trickle\r\n`,
  // Complete headers announcing a body, then the body one byte per tick.
  body: (port) => `POST /ingest HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"data":"`,
}

/**
 * A slow client: opens a socket, sends the start of a request and then one more piece every `interval`
 * ms, so a server without deadlines keeps the socket forever. `state.closed` flips when the server
 * closes the connection.
 */
export function trickle(port, kind, interval) {
  const state = { closed: false, connected: false, closedAt: undefined, socket: undefined }
  const socket = connect(port, '127.0.0.1')
  state.socket = socket
  let timer
  const connected = new Promise((resolve) => {
    socket.once('connect', () => {
      state.connected = true
      socket.write(trickleStarts[kind](port))
      timer = setInterval(() => {
        if (!socket.writable) return
        socket.write(kind === 'headers' ? `X-Trickle-${Math.random().toString(36).slice(2, 8)}: 1\r\n` : 'a')
      }, interval)
      resolve()
    })
    socket.once('error', () => resolve())
  })
  socket.on('data', () => {})
  socket.on('error', () => {})
  socket.once('close', () => {
    clearInterval(timer)
    state.closed = true
    state.closedAt = performance.now()
  })
  state.ready = connected
  state.stop = () => {
    clearInterval(timer)
    socket.destroy()
  }
  return state
}

/**
 * Closed-loop load: `concurrency` workers each call `fn()` again as soon as the previous call settled,
 * until `until` (a `performance.now()` deadline). Returns every result.
 */
export async function loop(fn, { concurrency, until, pauseAfter }) {
  const results = []
  const worker = async () => {
    while (performance.now() < until) {
      const result = await fn()
      results.push(result)
      const pause = pauseAfter?.(result)
      if (pause) await sleep(pause)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return results
}

/** Runs `fn()` every `interval` ms, one call at a time, until `until`. Returns every result. */
export async function every(interval, fn, { until }) {
  const results = []
  while (performance.now() < until) {
    const next = performance.now() + interval
    results.push(await fn())
    const wait = next - performance.now()
    if (wait > 0) await sleep(wait)
  }
  return results
}

/** The p-th percentile (0–100) of `values`, nearest-rank; `undefined` for no values. */
export function percentile(values, p) {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

/** Counts results by outcome: the HTTP status, or the error code. */
export function tally(results) {
  const counts = {}
  for (const r of results) {
    const key = r.error ?? String(r.status)
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

/** Runs `fn(i)` for i = 0..count-1 with at most `concurrency` calls at once. Returns every result. */
export async function batch(count, concurrency, fn) {
  const results = []
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      results.push(await fn(i))
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return results
}
