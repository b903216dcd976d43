// Small helpers shared by the benchmark scripts (bench/pg so far; the older scripts keep their own copies).

/** `--name N` from the command line as a number, or `fallback`. */
export function numberArg(name, fallback) {
  const args = process.argv.slice(2)
  const i = args.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(args[i + 1])
}

/** The median of `values` (not modified). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
