// Entry point '@leak-guard/core/client': the bounded outgoing HTTP client on undici. Kept apart from the
// main entry because importing undici installs its Agent as the global dispatcher of Node's fetch.
export { ClientQueueFullError, ClientTimeoutError, HttpClientClosedError } from '../errors.js'
export { HttpClient, createHttpClient } from './http-client.js'
export type { CallOptions, HttpClientFetchInit, HttpClientRequestOptions, HttpClientResponseData, OriginStats } from './http-client.js'
export type { HttpClientOptions, ResolvedHttpClientOptions } from './options.js'
export { createAgent } from './agent.js'
export type { AgentOptions, BoundedAgent } from './agent.js'
