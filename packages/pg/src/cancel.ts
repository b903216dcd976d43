import { connect, type Socket } from 'node:net'

/** What a node-postgres client knows about its backend: where it is and the protocol's cancel key. */
export interface CancelTarget {
  host?: string | undefined
  port?: number | undefined
  processID: number | null
  secretKey: number | null
}

// CancelRequest: length 16, code 80877102 (1234 << 16 | 5678), backend pid, secret key.
const CANCEL_CODE = 80877102

/**
 * Sends PostgreSQL's CancelRequest for `target`'s backend over a new connection, as the protocol
 * requires (the busy connection cannot carry it), and closes it once the server has read it. Nothing
 * comes back: the running statement fails with `57014` on its own connection if the cancel landed.
 * Plain TCP or a unix socket, like node-postgres's own `cancel`; errors are swallowed (the deadline's
 * `statement_timeout` is the fallback), and the socket is unref'd and bounded to 5 s.
 */
export function sendCancel(target: CancelTarget): void {
  const { processID, secretKey } = target
  if (processID === null || secretKey === null) return
  const host = target.host ?? 'localhost'
  const port = target.port ?? 5432
  const packet = Buffer.allocUnsafe(16)
  packet.writeInt32BE(16, 0)
  packet.writeInt32BE(CANCEL_CODE, 4)
  packet.writeInt32BE(processID, 8)
  packet.writeInt32BE(secretKey, 12)
  let socket: Socket
  try {
    socket = host.startsWith('/') ? connect(`${host}/.s.PGSQL.${port}`) : connect(port, host)
  } catch {
    return
  }
  socket.unref()
  socket.setTimeout(5_000, () => socket.destroy())
  socket.on('error', () => socket.destroy())
  // The server closes the connection once it has read the request; end() half-closes our side.
  socket.on('connect', () => socket.end(packet))
}
