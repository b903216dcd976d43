// Type-checked by the consumer type matrix (strict, nodenext, no skipLibCheck) on every @types/node:
// the thread pool's declarations name what a worker may transfer.
import { createThreadPool, type ThreadRunOptions } from '@leak-guard/core'

export async function sum(filename: string): Promise<number> {
  const pool = createThreadPool({ filename, threads: 1 })
  const buffer = new ArrayBuffer(8)
  const options: ThreadRunOptions = { transferList: [buffer], name: 'sum' }
  const total = await pool.run<number>({ buffer }, options)
  await pool.close()
  return total
}
