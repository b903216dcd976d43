/**
 * What the producer (`createQueueDispatcher`) and the workers (`createQueueWorker`) agree on, in one
 * place: where a job carries its deadline, how a cancel travels, and where it is written down.
 *
 * A cancel travels twice, both in one Lua script run by the producer:
 * - as a message on the queue's pub/sub channel `<prefix>:<queue>:lg:cancel`, which every worker of the
 *   queue subscribes to on one connection of its own (the fast path: the processor's signal aborts on
 *   the worker that runs the job, whatever machine it is on);
 * - as a field in the job's own hash (`<prefix>:<queue>:<id>`), written only if the job still exists.
 *   It is durable as long as the job is, and goes with the job when BullMQ removes it, so it adds no
 *   Redis key of its own. A worker reads it when a job starts again after a stall (another worker may
 *   have been told while this one was not subscribed) and after its subscriber reconnects.
 */

/** Job option (persisted with the job's `opts`) holding the absolute deadline, epoch milliseconds. */
export const DEADLINE_OPTION = 'lgDeadline'

/**
 * Longest delay `setTimeout` takes (about 24.8 days); a longer one fires after 1 ms. Deadlines further
 * away get no timer: they are still checked when a worker takes the job.
 */
export const MAX_TIMER = 2 ** 31 - 1

/** Field of the job hash that marks a cancelled job; its value is the code of the reason. */
export const CANCEL_FIELD = 'lgCancel'

/** Suffix of the queue's cancel channel, passed to BullMQ's `toKey()` on both sides. */
export const CANCEL_CHANNEL = 'lg:cancel'

/**
 * KEYS[1] job hash, KEYS[2] cancel channel; ARGV[1] marker field, ARGV[2] reason code, ARGV[3] message.
 * The marker is written only when the job hash exists, so a cancel for a job already gone leaves no key.
 */
export const CANCEL_SCRIPT = `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('PUBLISH', KEYS[2], ARGV[3])`

/** The cancel message: `<reason code> <job id>` (the code has no spaces; the id may). */
export function encodeCancel(jobId: string, code: string): string {
  return `${code} ${jobId}`
}

export function decodeCancel(message: string): { jobId: string; code: string } | undefined {
  const space = message.indexOf(' ')
  if (space < 1) return undefined
  return { code: message.slice(0, space), jobId: message.slice(space + 1) }
}

/** The deadline a job carries, or `undefined`. */
export function deadlineOf(opts: object): number | undefined {
  const value = (opts as Record<string, unknown>)[DEADLINE_OPTION]
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined
}

/**
 * The part of BullMQ's ioredis client this package uses. BullMQ types its clients loosely (it also
 * speaks to other Redis clients), and ioredis is BullMQ's dependency, not ours.
 */
export interface RedisClient {
  readonly status: string
  xrevrange(key: string, end: string, start: string, count: 'COUNT', n: number): Promise<Array<[string, string[]]>>
  eval(script: string, numKeys: number, ...args: string[]): Promise<unknown>
  hget(key: string, field: string): Promise<string | null>
  pipeline(): { hget(key: string, field: string): unknown; exec(): Promise<Array<[Error | null, unknown]> | null> }
  duplicate(): RedisClient
  subscribe(channel: string): Promise<unknown>
  quit(): Promise<unknown>
  disconnect(): void
  // ioredis overloads its events with listeners of many shapes; only `any[]` is assignable to all of them.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  removeListener(event: string, listener: (...args: any[]) => void): unknown
}

/** BullMQ's connection as the ioredis client it is. */
export async function redisOf(client: Promise<unknown>): Promise<RedisClient> {
  return (await client) as RedisClient
}
