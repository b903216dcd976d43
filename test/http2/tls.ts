import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

// A self-signed pair for 127.0.0.1 that exists only for the tests (the key is committed on purpose: it
// protects nothing). Clients pass `rejectUnauthorized: false`.
const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

export const tlsPair = {
  key: readFileSync(join(fixtures, 'key.pem')),
  cert: readFileSync(join(fixtures, 'cert.pem')),
}
