// Child processes of the demo: every one is forked through here, so one place kills them all — at the end
// of a run, when the demo throws, and on SIGINT/SIGTERM.
import { fork } from 'node:child_process'

const children = new Set()

/**
 * Forks `file` with `args` and resolves with the child once it sends `{ type: 'ready', ...info }` over IPC.
 * Rejects if it exits or does not become ready within `timeout` ms.
 */
export function start(file, args = [], { timeout = 10_000 } = {}) {
  const child = fork(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${file} ${args.join(' ')} was not ready within ${timeout} ms`)), timeout)
    function fail(error) {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.kill('SIGKILL')
      reject(error)
    }
    function onMessage(message) {
      if (message?.type !== 'ready') return
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onEarlyExit)
      resolve({ child, ...message })
    }
    function onEarlyExit(code, signal) {
      fail(new Error(`${file} ${args.join(' ')} exited before it was ready (code ${code}, signal ${signal})`))
    }
    child.on('message', onMessage)
    child.once('exit', onEarlyExit)
  })
}

let nextId = 1

/** Sends `{ type, ...payload }` to a child and resolves with its answer (`{ id, ... }`). */
export function ask(child, type, payload = {}, timeout = 5_000) {
  const id = nextId++
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no answer to ${type} within ${timeout} ms`)), timeout)
    function done(error, value) {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      if (error) reject(error)
      else resolve(value)
    }
    function onMessage(message) {
      if (message?.id === id) done(undefined, message)
    }
    function onExit() {
      done(new Error(`child exited before answering ${type}`))
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.send({ type, id, ...payload })
  })
}

/** Resolves with `{ code, signal, ms }` when the child exits, or `undefined` after `timeout` ms. */
export function waitForExit(child, timeout) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode, ms: 0 })
  const started = performance.now()
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit)
      resolve(undefined)
    }, timeout)
    function onExit(code, signal) {
      clearTimeout(timer)
      resolve({ code, signal, ms: performance.now() - started })
    }
    child.once('exit', onExit)
  })
}

/** Kills `child` (SIGKILL) and waits for it to be gone. */
export async function kill(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = waitForExit(child, 5_000)
  child.kill('SIGKILL')
  await exited
}

/** Kills every child still running. */
export async function killAll() {
  await Promise.all([...children].map(kill))
}

/** Number of children still running (the demo checks it is 0 before it exits). */
export function running() {
  return children.size
}

let installed = false

/** On SIGINT/SIGTERM: kill the children, then exit with the conventional status. */
export function killChildrenOnSignals() {
  if (installed) return
  installed = true
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      for (const child of children) child.kill('SIGKILL')
      process.exit(signal === 'SIGINT' ? 130 : 143)
    })
  }
}
