// The CPU-heavy part of the exporter's /metrics route: synchronous work of a fixed duration, standing in
// for serialising a large registry. The unguarded app runs it on the event loop; the guarded app runs
// it in a worker thread (cpu-worker.mjs).
export function renderMetrics(ms) {
  const end = performance.now() + ms
  let x = 0
  while (performance.now() < end) x = Math.sqrt(x + 1.5)
  return `# demo metrics\nwork_units ${Math.round(x)}\n`
}
