// Worker-thread module for the guarded /metrics route.
import { renderMetrics } from './cpu.mjs'

export default function render({ ms }) {
  return renderMetrics(ms)
}
