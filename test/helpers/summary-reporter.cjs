'use strict'
// Mocha's spec reporter, plus the counts written where scripts/test.mjs can add them up. Mocha prints
// "passing/failing"; CI reads a plain "N passed, N failed" line, which scripts/test.mjs prints last.
const Mocha = require('mocha')
const { writeFileSync } = require('node:fs')

const { EVENT_RUN_END } = Mocha.Runner.constants

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options)
    runner.once(EVENT_RUN_END, () => {
      const stats = runner.stats
      const file = process.env.LG_SUMMARY_FILE
      const summary = { passed: stats.passes, failed: stats.failures, skipped: stats.pending }
      if (file) writeFileSync(file, JSON.stringify(summary))
    })
  }
}

module.exports = SummaryReporter
