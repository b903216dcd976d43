import express from 'express'
import Koa from 'koa'
import Router from '@koa/router'
import { bodyParser } from '@koa/bodyparser'
import Fastify from 'fastify'
import { kitsFor } from '../conformance/adapters.js'
import { defineConformance } from '../conformance/suite.js'
import { h2, https1 } from '../conformance/transport.js'

// The HTTP/2 cells: Koa on a node:http2 secure server (allowHTTP1) and Fastify with `http2: true`,
// both spoken to over HTTP/2 (a client leaving is RST_STREAM on a session that stays up). Express cannot
// serve HTTP/2 requests (it swaps the request prototype for http.IncomingMessage's: expressjs/express#3388),
// so its cell is the same node:http2 server with HTTP/1.1 clients through allowHTTP1.
defineConformance(kitsFor({ Koa, Router, bodyParser, Fastify }, { server: 'http2' }), { transport: h2() })
defineConformance(kitsFor({ express }, { server: 'http2' }), { transport: https1() })
