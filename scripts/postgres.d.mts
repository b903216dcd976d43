export interface PostgresCluster {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly database: string
  /** Stops the cluster and removes its directory. */
  stop(): void
}
export function postgresBin(): string | undefined
export function startPostgres(): Promise<PostgresCluster>
