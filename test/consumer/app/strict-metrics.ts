// Type-checked by the consumer type matrix only where prom-client is installed: its Registry and
// module fit createMetrics()'s options.
import * as client from 'prom-client'
import { createGuard, createMetrics } from '@leak-guard/core'

export async function metrics(): Promise<string> {
  const register = new client.Registry()
  const handle = await createMetrics(createGuard(), { register, client })
  handle.close()
  return register.metrics()
}
