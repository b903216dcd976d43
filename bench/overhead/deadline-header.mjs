// Cost of the deadline headers alone, per request, without a server around them (the server-level
// figure is the lg-deadline variant of run.mjs, whose noise is larger than this whole cost):
//
//   node bench/overhead/deadline-header.mjs [--rounds 9] [--ops 1000000]
//
// Variants, interleaved round by round; medians of ns/op over the rounds:
//   inbound, no header     what every request pays: guard.begin() looks up the configured headers
//   inbound, Connect       parse `Connect-Timeout-Ms: 20000`
//   inbound, gRPC          parse `grpc-timeout: 20000m`
//   outbound, Connect      stampDeadline(): format the remaining time onto a call's headers (a copy)
//   parse + format         inbound Connect + outbound Connect: what one hop of a chain adds
import { readInboundDeadline, stampDeadline } from '@leak-guard/core/adapter'
import { createGuard } from '@leak-guard/core'
import os from 'node:os'

const args = process.argv.slice(2)
const arg = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : Number(args[i + 1])
}
const rounds = arg('--rounds', 9)
const ops = arg('--ops', 1_000_000)

// The resolved default option, as the guard holds it.
const inbound = createGuard().options.inboundDeadline
const connect = { name: 'connect-timeout-ms', grpc: false }
// Headers as a node:http request has them (a plain object of lower-case names).
const base = { host: '127.0.0.1:3000', 'user-agent': 'autocannon', accept: '*/*', connection: 'keep-alive', 'content-length': '0' }
const none = { ...base }
const withConnect = { ...base, 'connect-timeout-ms': '20000' }
const withGrpc = { ...base, 'grpc-timeout': '20000m' }
const callHeaders = { 'content-type': 'application/json', accept: 'application/json' }

let sink = 0
// What the client does when a call gets its connection: checks the caller's headers for the name and
// puts the remaining time on a copy of them.
function stamp(remaining) {
  const opts = { headers: callHeaders }
  stampDeadline(opts, connect, remaining)
  return opts
}

const variants = {
  'inbound, no header': () => {
    for (let i = 0; i < ops; i++) if (readInboundDeadline(none, inbound) === undefined) sink++
  },
  'inbound, Connect': () => {
    for (let i = 0; i < ops; i++) sink += readInboundDeadline(withConnect, inbound)
  },
  'inbound, gRPC': () => {
    for (let i = 0; i < ops; i++) sink += readInboundDeadline(withGrpc, inbound)
  },
  'outbound, Connect': () => {
    for (let i = 0; i < ops; i++) sink += stamp(12_345.6 + i).headers[connect.name].length
  },
  'parse + format': () => {
    for (let i = 0; i < ops; i++) sink += stamp(readInboundDeadline(withConnect, inbound) - 7.3).headers[connect.name].length
  },
}

const names = Object.keys(variants)
const samples = new Map(names.map((n) => [n, []]))
for (const fn of Object.values(variants)) fn() // warm-up: every variant compiled before measuring
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(k + r) % names.length]
    const start = process.hrtime.bigint()
    variants[name]()
    samples.get(name).push(Number(process.hrtime.bigint() - start) / ops)
  }
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}
console.log(`node ${process.version}, ${rounds} rounds x ${ops} ops, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (sink ${sink % 10})`)
console.log('')
console.log('| variant | ns/op (median) | min–max |')
console.log('|---|---|---|')
for (const name of names) {
  const s = samples.get(name)
  console.log(`| ${name} | ${median(s).toFixed(1)} | ${Math.min(...s).toFixed(1)}–${Math.max(...s).toFixed(1)} |`)
}
