import { spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * A throwaway PostgreSQL cluster for a test file: `initdb` in a temporary directory, trust auth on
 * 127.0.0.1, a free port, `fsync` off; stopped and removed in `after()` even when a test failed.
 * PostgreSQL refuses to run as root: as root (CI) the directory is handed to the `postgres` user and
 * the binaries run through `runuser -u postgres --`.
 */
export interface Postgres {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly database: string
}

/** `/usr/lib/postgresql/<newest>/bin`, or undefined when Debian's postgresql package is not installed. */
export function postgresBin(): string | undefined {
  const base = '/usr/lib/postgresql'
  if (!existsSync(base)) return undefined
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions.length === 0 ? undefined : join(base, versions[0]!, 'bin')
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

const asRoot = process.getuid?.() === 0

function run(bin: string, args: string[]): void {
  const command = asRoot ? 'runuser' : bin
  const argv = asRoot ? ['-u', 'postgres', '--', bin, ...args] : args
  const result = spawnSync(command, argv, { encoding: 'utf8', timeout: 60_000 })
  if (result.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`)
}

function postgresIds(): { uid: number; gid: number } {
  const result = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
  const group = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
  if (result.status !== 0 || group.status !== 0) throw new Error('the postgres user does not exist')
  return { uid: Number(result.stdout.trim()), gid: Number(group.stdout.trim()) }
}

/**
 * Registers before/after hooks in the calling `describe()` that start a cluster for its tests and
 * remove it afterwards. Without PostgreSQL the tests are skipped with a line saying so.
 */
export function usePostgres(): Postgres {
  let dir: string | undefined
  let bin: string | undefined
  const handle = { host: '127.0.0.1', port: 0, user: 'postgres', database: 'postgres' }

  before(async function () {
    this.timeout(120_000)
    bin = postgresBin()
    if (bin === undefined) {
      console.log('      SKIPPED: PostgreSQL is not installed (apt-get install -y postgresql)')
      this.skip()
    }
    dir = mkdtempSync(join(tmpdir(), 'leak-guard-pg-'))
    if (asRoot) {
      const { uid, gid } = postgresIds()
      chownSync(dir, uid, gid) // initdb creates everything below as postgres
    }
    const data = join(dir, 'data')
    run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions', '-E', 'UTF8'])
    handle.port = await freePort()
    const options = `-p ${handle.port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`
    run(join(bin, 'pg_ctl'), ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'])
  })

  after(function () {
    this.timeout(60_000)
    if (dir === undefined) return
    try {
      if (bin !== undefined && existsSync(join(dir, 'data', 'postmaster.pid'))) run(join(bin, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'immediate', '-w', 'stop'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
      dir = undefined
    }
  })

  return handle
}
