// ESLint for the library's TypeScript (js/), with type information from the
// tsconfig that builds it. Layout is Prettier's job (.prettierrc.json):
// eslint-config-prettier turns off the rules that would fight it.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig({
  files: ['js/**/*.ts'],
  extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked, prettier],
  languageOptions: {
    parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
  },
  rules: {
    // A caught `unknown` is passed on unchanged: a handler's throw reaches
    // the caller as it was thrown.
    '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
    // A take answers in one number: a count, or a `TakeStatus` code (the raw
    // ops' ABI, crates/velo-node/src/raw.rs), so counts meet codes by design.
    '@typescript-eslint/no-unsafe-enum-comparison': 'off',
  },
});
