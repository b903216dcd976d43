import { currentScope, currentSignal } from '@leak-guard/core'

// Deep in a data layer, without threading `req` through every call:
export async function loadProfile(id: string): Promise<unknown> {
  const response = await fetch(`${process.env.PROFILE_SERVICE}/profiles/${id}`, { signal: currentSignal() })
  return response.json()
}

// Background work owned by the request: aborted when it ends, reported if it ignores that.
export function recordView(id: string): void {
  void currentScope()?.spawn(async (signal) => {
    await fetch(`${process.env.AUDIT_SERVICE}/views/${id}`, { method: 'POST', signal })
  })
}
