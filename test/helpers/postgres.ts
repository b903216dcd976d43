import { postgresBin, startPostgres, type PostgresCluster } from '../../scripts/postgres.mjs'

/** Where a test file's throwaway cluster listens (set once its `before()` ran). */
export interface Postgres {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly database: string
}

/**
 * Registers before/after hooks in the calling `describe()` that start a throwaway PostgreSQL cluster
 * (scripts/postgres.mjs) for its tests and stop and remove it afterwards, even when a test failed.
 * Without PostgreSQL the tests are skipped with a line saying so.
 */
export function usePostgres(): Postgres {
  let cluster: PostgresCluster | undefined
  const handle = { host: '127.0.0.1', port: 0, user: 'postgres', database: 'postgres' }

  before(async function () {
    this.timeout(120_000)
    if (postgresBin() === undefined) {
      console.log('      SKIPPED: PostgreSQL is not installed (apt-get install -y postgresql)')
      this.skip()
    }
    cluster = await startPostgres()
    handle.port = cluster.port
  })

  after(function () {
    this.timeout(60_000)
    cluster?.stop()
    cluster = undefined
  })

  return handle
}
