// ESLint flat config: typescript-eslint's recommended rules, plus the one
// project rule that matters most — raw shared memory is reached only through
// shared/memory/ (see docs/ARCHITECTURE.md, "who owns which memory").
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const rawMemory = ['SharedArrayBuffer', 'Atomics', 'DataView'].map((name) => ({
  name,
  message: `${name} is reached only through shared/memory/ (one door to machine memory).`,
}));

export default tseslint.config(
  { ignores: ['node_modules/**', 'bench/results/**', 'test/oracle/build/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly', performance: 'readonly', structuredClone: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', queueMicrotask: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-restricted-globals': ['error', ...rawMemory],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // The one door, the benchmarks' raw baselines, and the test mutants may touch raw memory.
    files: ['shared/memory/**', 'bench/baselines/**', 'test/helpers/raw-*.ts'],
    rules: { 'no-restricted-globals': 'off' },
  },
);
