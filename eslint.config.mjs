// ESLint for the shipped source of the four packages: typescript-eslint's type-aware recommended rules
// (`recommendedTypeChecked`), each package type-checked through its own tsconfig (`projectService`).
// Tests, examples and benchmarks are type-checked (not linted) by `node scripts/build.mjs --check`.
// `pnpm lint` runs it (after a build: the adapters are type-checked against core's dist/ declarations);
// `pnpm test` runs it after the build and before the suites, so a finding fails the test command.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  // .before/.after: copies of earlier builds for bench/dispatch/ab.mjs.
  { ignores: ['**/dist/**', '**/node_modules/**', 'packages/*/.before/**', 'packages/*/.after/**'] },
  {
    files: ['packages/*/src/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Node's prototype methods are taken on purpose and called with `.call()` (a signal's hidden class is
      // unique on Node 20, so per-object lookups miss V8's inline caches; see dispatch/task.ts), and
      // functions are handed over as stack-trace boundaries (`captureUserStack(fn)`).
      '@typescript-eslint/unbound-method': 'off',
      // Aborted work rejects with the abort reason, which is whatever the aborter passed (`signal.reason`),
      // as fetch and node:timers/promises do.
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      // `_`-named bindings are deliberate: rest siblings that drop keys from a copy, unused parameters.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
)
