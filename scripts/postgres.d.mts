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
/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number>
