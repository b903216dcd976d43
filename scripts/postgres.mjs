// A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a temporary directory, trust
// auth on 127.0.0.1, a free port, durability off (fsync, synchronous_commit, full_page_writes).
// PostgreSQL refuses to run as root: as root (CI) the directory is handed to the `postgres` user and
// the binaries run through `runuser -u postgres --`. `stop()` stops it and removes the directory.
import { spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** `/usr/lib/postgresql/<newest>/bin`, or undefined when Debian's postgresql package is not installed. */
export function postgresBin() {
  const base = '/usr/lib/postgresql'
  if (!existsSync(base)) return undefined
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions.length === 0 ? undefined : join(base, versions[0], 'bin')
}

/** A port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const asRoot = process.getuid?.() === 0

function run(bin, args) {
  const command = asRoot ? 'runuser' : bin
  const argv = asRoot ? ['-u', 'postgres', '--', bin, ...args] : args
  const result = spawnSync(command, argv, { encoding: 'utf8', timeout: 60_000 })
  if (result.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`)
}

function postgresIds() {
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
  if (uid.status !== 0 || gid.status !== 0) throw new Error('the postgres user does not exist')
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

/** Starts a cluster; throws when PostgreSQL is missing (check `postgresBin()` first). */
export async function startPostgres() {
  const bin = postgresBin()
  if (bin === undefined) throw new Error('PostgreSQL is not installed (apt-get install -y postgresql)')
  const dir = mkdtempSync(join(tmpdir(), 'leak-guard-pg-'))
  const data = join(dir, 'data')
  let started = false
  const stop = () => {
    try {
      if (started && existsSync(join(data, 'postmaster.pid'))) run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    if (asRoot) {
      const { uid, gid } = postgresIds()
      chownSync(dir, uid, gid) // initdb creates everything below it as postgres
    }
    run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions', '-E', 'UTF8'])
    const port = await freePort()
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`
    started = true
    run(join(bin, 'pg_ctl'), ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
    return { host: '127.0.0.1', port, user: 'postgres', database: 'postgres', stop }
  } catch (error) {
    stop()
    throw error
  }
}
