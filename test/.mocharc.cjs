'use strict'
module.exports = {
  spec: ['**/*.test.ts'],
  ignore: ['node_modules/**', 'matrix/**/node_modules/**'],
  extension: ['ts'],
  reporter: require.resolve('./helpers/summary-reporter.cjs'),
  timeout: 10000,
  exit: false,
}
