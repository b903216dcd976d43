// Helpers the benchmark scripts share: argument reading, medians, timed batches of async work.

/** `const arg = argReader(process.argv.slice(2))`; `arg('--rounds', '5')` is the value after the flag. */
export function argReader(args) {
  return (name, fallback) => {
    const i = args.indexOf(name)
    return i === -1 ? fallback : args[i + 1]
  }
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * Submits `n` calls of `submit(i)` at once and awaits them all: a warm-up batch of `warmup`, then
 * `batches` timed ones. Medians of throughput per wall-clock second and per CPU second
 * (`process.cpuUsage()`, which other jobs on the machine disturb much less).
 */
export async function timedBatches(submit, warmup, n, batches = 3) {
  const batch = async (count) => {
    const all = new Array(count)
    for (let i = 0; i < count; i++) all[i] = submit(i)
    await Promise.all(all)
  }
  await batch(warmup)
  const wall = []
  const cpu = []
  for (let b = 0; b < batches; b++) {
    const c = process.cpuUsage()
    const start = performance.now()
    await batch(n)
    const ms = performance.now() - start
    const used = process.cpuUsage(c)
    wall.push((n / ms) * 1000)
    cpu.push((n / ((used.user + used.system) / 1000)) * 1000)
  }
  return { opsPerSec: Math.round(median(wall)), opsPerCpuSec: Math.round(median(cpu)) }
}
