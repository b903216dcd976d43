import { createDispatcher, createGuard, createThreadPool } from '@leak-guard/core'

const guard = createGuard()
// Background work: 8 at once, 100 waiting, then LG_ERR_POOL_FULL (503 + Retry-After).
const io = createDispatcher({ concurrency: 8, maxQueue: 100, guard })
// CPU work: 2 warm threads, 4 waiting; an aborted task's thread is terminated and replaced.
const cpu = createThreadPool({ filename: new URL('./sum-worker.mjs', import.meta.url), threads: 2, maxQueue: 4, guard })

// Inside a request both use the request's signal; outside one, pass `{ signal }` if you have one.
const answer = await io.run(async (signal) => (signal.aborted ? 0 : 42))
const sum = await cpu.run({ upTo: 1_000_000 })
console.log(answer, sum)

await guard.shutdown() // closes both pools: nothing keeps the process alive
