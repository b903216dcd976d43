// The thread pool's worker for pools.ts: plain JavaScript, so worker threads load it without a loader.
export default function sum({ upTo }) {
  let total = 0
  for (let i = 0; i < upTo; i++) total += i
  return total
}
