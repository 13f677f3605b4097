// Flat config: typescript-eslint's recommended rules plus the layering rules from DESIGN.md
// (only the CLI may touch process.env/argv/exit; lower layers must not import upward).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (dir, forbidden) => ({
  files: [`src/${dir}/**/*.ts`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: forbidden.map((f) => ({ group: [`**/${f}/**`, `../${f}`, `./${f}`, `**/${f}.js`], message: `src/${dir} must not import src/${f} (see DESIGN.md dependency rules)` })),
    }],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tools/**', 'coverage/**', 'cacerts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['scripts/**/*.mjs', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { process: 'readonly', require: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli.ts', 'src/main.ts', 'src/cli/**'],
    rules: {
      'no-restricted-properties': ['error',
        { object: 'process', property: 'env', message: 'only src/cli reads process.env; pass settings in' },
        { object: 'process', property: 'argv', message: 'only src/cli reads process.argv' },
        { object: 'process', property: 'exit', message: 'only src/cli calls process.exit' },
      ],
    },
  },
  layer('vault', ['pki', 'store', 'agent', 'telemetry', 'dev', 'cli']),
  layer('pki', ['vault', 'store', 'agent', 'telemetry', 'dev', 'cli']),
  layer('store', ['vault', 'agent', 'telemetry', 'dev', 'cli']),
  layer('telemetry', ['vault', 'pki', 'store', 'agent', 'dev', 'cli']),
  layer('agent', ['dev', 'cli']),
  layer('install', ['vault', 'pki', 'store', 'agent', 'telemetry', 'dev', 'cli']),
  layer('common', ['vault', 'pki', 'store', 'agent', 'telemetry', 'dev', 'cli']),
);
