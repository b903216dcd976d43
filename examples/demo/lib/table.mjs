// Plain-text tables for the terminal.
export function renderTable(title, header, sections) {
  const all = [header, ...sections.flatMap((s) => s.rows.map((r, i) => [i === 0 ? s.label : '', ...r]))]
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c] ?? '').length)))
  const line = (r) => r.map((cell, c) => String(cell ?? '').padEnd(widths[c])).join('  ').trimEnd()
  const rule = widths.map((w) => '─'.repeat(w)).join('  ')
  const out = [title, rule, line(header), rule]
  for (const s of sections) {
    for (const [i, r] of s.rows.entries()) out.push(line([i === 0 ? s.label : '', ...r]))
  }
  out.push(rule)
  return out.join('\n')
}
