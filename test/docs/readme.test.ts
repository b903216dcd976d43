import { expect } from 'chai'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** The READMEs whose code blocks must come from files that a test or an example runs. */
function readmes(): string[] {
  const files = [join(root, 'README.md')]
  for (const dir of ['packages', 'examples']) {
    for (const name of readdirSync(join(root, dir))) {
      const file = join(root, dir, name, 'README.md')
      if (existsSync(file)) files.push(file)
    }
  }
  return files
}

interface Block {
  lang: string
  code: string
  snippet: string | undefined
}

function blocks(markdown: string): Block[] {
  const found: Block[] = []
  const re = /(?:<!-- snippet: (\S+) -->\n)?```(\w*)\n([\s\S]*?)```/g
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) found.push({ snippet: m[1], lang: m[2]!, code: m[3]! })
  return found
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}

async function waitForServer(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`snippet exited with ${child.exitCode}`)
    try {
      await fetch(`http://127.0.0.1:${port}/export`)
      return
    } catch {
      await sleep(100)
    }
  }
  throw new Error('snippet did not start listening')
}

describe('README code blocks', () => {
  for (const file of readmes()) {
    const name = relative(root, file)
    it(`${name}: every TypeScript/JavaScript block is a snippet file, verbatim`, () => {
      const markdown = readFileSync(file, 'utf8')
      for (const block of blocks(markdown)) {
        if (!['ts', 'js', 'mjs', 'typescript', 'javascript'].includes(block.lang)) continue
        expect(block.snippet, `a ${block.lang} block in ${name} has no <!-- snippet: path --> marker:\n${block.code.slice(0, 200)}`).to.be.a('string')
        const source = readFileSync(join(root, block.snippet!), 'utf8')
        expect(block.code, `${name} differs from ${block.snippet}`).to.equal(source)
      }
    })
  }

  describe('the quick starts', () => {
    let child: ChildProcess | undefined
    afterEach(async () => {
      if (child && child.exitCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
      child = undefined
    })

    // Express 4 ignores a handler's promise: the same snippet runs there too, from a copy placed next to
    // test/matrix/express4's node_modules so that `express` resolves to 4.x.
    const express4 = join(root, 'test', 'matrix', 'express4')
    const cases = [
      { title: 'express', framework: 'express', cwd: join(root, 'examples', 'quickstart'), file: 'express.ts' },
      { title: 'express (Express 4, the same file)', framework: 'express', cwd: express4, file: `.quickstart-${process.pid}.ts` },
      { title: 'koa', framework: 'koa', cwd: join(root, 'examples', 'quickstart'), file: 'koa.ts' },
      { title: 'fastify', framework: 'fastify', cwd: join(root, 'examples', 'quickstart'), file: 'fastify.ts' },
    ]
    for (const { title, framework, cwd, file } of cases) {
      it(`${title}: answers /slow with 503 at its 1 s deadline, keeps running and serves the longer /export route`, async function () {
        this.timeout(20_000)
        const copy = cwd === express4 ? join(cwd, file) : undefined
        if (copy !== undefined) copyFileSync(join(root, 'examples', 'quickstart', `${framework}.ts`), copy)
        try {
          const port = await freePort()
          child = spawn(process.execPath, ['--import', 'tsx', file], { cwd, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'inherit', 'inherit'] })
          await waitForServer(port, child)
          if (copy !== undefined) {
            expect(createRequire(join(cwd, 'package.json'))('express/package.json').version).to.match(/^4\./)
          }
          const started = performance.now()
          const slow = await fetch(`http://127.0.0.1:${port}/slow`)
          const elapsed = performance.now() - started
          expect(slow.status).to.equal(503)
          expect(slow.headers.get('retry-after')).to.equal('1')
          expect(elapsed).to.be.within(900, 1_400)
          await slow.arrayBuffer()
          await sleep(100) // the handler's AbortError settles after the 503 went out
          expect(child.exitCode, 'the quick start exited after its first timeout').to.equal(null)
          const exported = await fetch(`http://127.0.0.1:${port}/export`)
          expect(exported.status).to.equal(200)
          expect(await exported.text()).to.equal('a long export')
        } finally {
          if (copy !== undefined) rmSync(copy, { force: true })
        }
      })
    }
  })
})

describe('core README scripts', () => {
  for (const [file, expected] of [
    ['pools.ts', '42 499999500000'],
    ['client.ts', "{ id: 7 }"],
  ] as const) {
    it(`${file} prints its result and exits by itself (nothing left open)`, async function () {
      this.timeout(30_000)
      const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: join(root, 'examples', 'quickstart'), stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()))
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      const [code] = (await once(child, 'exit')) as [number | null]
      clearTimeout(timer)
      expect(code).to.equal(0)
      expect(out.trim()).to.equal(expected)
    })
  }
})
