// ESLint for the TypeScript sources (typescript-eslint's type-checked recommended rules, so
// promises that nobody awaits or catches are found) and the plain-Node scripts. `npm run lint`.
import eslint from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'coverage/', '.bench/', '.faults/'] },
  // An eslint-disable comment that suppresses nothing is an error: each one names a rule that fires.
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  eslint.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // The in-process store and lock implement Promise-returning ports without awaiting anything:
      // `async` is what turns their throws into rejections, as the Redis implementations behave.
      '@typescript-eslint/require-await': 'off',
      // `const { dropped: _dropped, ...rest } = options` leaves a key out of a copy.
      // `_request`: a parameter a signature needs and the body does not use.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }],
    },
  },
  {
    // jest's asymmetric matchers (expect.any, expect.objectContaining) are typed `any`, and the
    // tests read answers parsed from JSON field by field; the sources keep these rules.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
  },
);
