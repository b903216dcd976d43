'use strict'
module.exports = {
  // scripts/test.mjs sets LG_SPECS when it names spec files itself, so they are not added to the full list.
  spec: process.env.LG_SPECS ? [] : ['**/*.test.ts'],
  ignore: ['node_modules/**', 'matrix/**/node_modules/**'],
  extension: ['ts'],
  reporter: require.resolve('./helpers/summary-reporter.cjs'),
  timeout: 10000,
  exit: false,
}
