// Which leak-guard pieces this build of @leak-guard/core has. The guarded apps use each piece when it is
// there; a row whose piece is missing says so in the output instead of showing a number.
import * as coreMain from '@leak-guard/core'
import * as coreClient from '@leak-guard/core/client'

// The main entry plus the HTTP client, which lives at '@leak-guard/core/client'.
const core = { ...coreMain, ...coreClient }

export const pieces = {
  hardenServer: typeof core.hardenServer === 'function',
  createShutdown: typeof core.createShutdown === 'function',
  createHttpClient: typeof core.createHttpClient === 'function',
  createThreadPool: typeof core.createThreadPool === 'function',
  snapshot: typeof core.takeSnapshot === 'function' || typeof core.createGuard?.({}).snapshot === 'function',
}

/** Where each piece comes from, for the output's notes. */
export const pieceIssue = {
  hardenServer: 'issue 4',
  createShutdown: 'issue 4',
  createHttpClient: 'issue 5',
  createThreadPool: 'issue 3',
  snapshot: 'issue 6',
}

export { core }
