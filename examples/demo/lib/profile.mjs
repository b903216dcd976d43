// Sizes and durations of a run. Deadlines are scaled down from production values (a real server would
// use e.g. headersTimeout 10 s) so that the whole replay fits in under two minutes; the mechanisms are the
// same. `short` is the mode the test suite runs.
export const profiles = {
  full: {
    // Stands in for the process's file-descriptor limit: server.maxConnections, same on both sides.
    connectionBudget: 64,
    slowClients: { attackers: 64, trickleEvery: 200, window: 5_000, wellBehavedEvery: 100, answerTimeout: 1_000 },
    clientLeft: { requests: 40, leaveAfter: 150, queryMs: 800, settleWithin: 2_000 },
    pool: { requests: 60, concurrency: 30, upstreamMs: 100, connections: 8 },
    cpu: { window: 2_500, concurrency: 4, cpuMs: 30, probeEvery: 20, threads: 1, maxQueue: 2 },
    callerGaveUp: { requests: 12, deadline: 500, workMs: 1_500 },
    shutdown: { keepAliveClients: 12, requestMs: 150, longRequests: 2, longMs: 10_000, signalAfter: 600, grace: 1_000, hardDeadline: 2_000, cap: 5_000 },
    guard: { timeout: 3_000, leakGracePeriod: 300 },
    harden: { headersTimeout: 1_000, requestTimeout: 1_500, keepAliveTimeout: 5_000, connectionsCheckingInterval: 200 },
  },
  short: {
    connectionBudget: 32,
    slowClients: { attackers: 32, trickleEvery: 100, window: 1_000, wellBehavedEvery: 100, answerTimeout: 400 },
    clientLeft: { requests: 12, leaveAfter: 80, queryMs: 400, settleWithin: 2_000 },
    pool: { requests: 24, concurrency: 12, upstreamMs: 60, connections: 4 },
    cpu: { window: 800, concurrency: 3, cpuMs: 25, probeEvery: 20, threads: 1, maxQueue: 1 },
    callerGaveUp: { requests: 6, deadline: 300, workMs: 900 },
    shutdown: { keepAliveClients: 6, requestMs: 100, longRequests: 1, longMs: 4_000, signalAfter: 250, grace: 400, hardDeadline: 1_000, cap: 1_500 },
    guard: { timeout: 1_500, leakGracePeriod: 200 },
    harden: { headersTimeout: 300, requestTimeout: 400, keepAliveTimeout: 5_000, connectionsCheckingInterval: 100 },
  },
}
