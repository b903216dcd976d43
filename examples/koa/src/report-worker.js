// Worker-thread module of the CPU-heavy /report route: runs on leak-guard's thread pool, never on the
// event loop. Plain JavaScript so worker threads load it without a TypeScript loader.
export default function buildReport({ rows }) {
  let checksum = 0
  let max = 0
  for (let i = 0; i < rows; i++) {
    const value = Math.sqrt(i * 7 + 3) % 97
    checksum = (checksum + value * 31) % 1_000_003
    if (value > max) max = value
  }
  return { rows, checksum: Math.round(checksum), max: Math.round(max * 100) / 100 }
}
