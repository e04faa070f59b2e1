// ESLint flat config: typescript-eslint with type information (shared/STYLE.md "Lint and format"), plus the
// layering of docs/internals.md ("Layers") enforced mechanically with no-restricted-imports and import-x/no-cycle:
//   - only src/clients/** imports a broker client library's values (engines may import its types);
//   - clients import no Fennel layer above them; backends, event buses and channels never import transports,
//     and transports never import backends, event buses or channels: engines share code through clients only;
//   - nothing under src/ except src/cli/** imports from src/cli (the CLI is an application of the core);
//   - the worker reaches the canvas's internals (src/app/canvas.ts) only through src/worker/workflow.ts;
//   - no import cycles anywhere under src/.
// Formatting is Prettier's job, not ESLint's. Run: npm run lint (eslint src test bench examples).

import { defineConfig, globalIgnores } from 'eslint/config';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

const CLIENT_LIBRARIES = ['better-sqlite3', 'ioredis', 'amqplib', '@nats-io/transport-node', '@nats-io/jetstream', '@nats-io/kv', '@nats-io/nats-core'];

/** Forbids the broker client libraries (and their subpaths), but for their types. */
const clientLibraries = {
  group: CLIENT_LIBRARIES.flatMap((name) => [name, `${name}/*`]),
  allowTypeImports: true,
  message: 'Only src/clients/** may import a broker client library; engines use the clients layer (docs/internals.md, Layers).',
};

/** Forbids importing the CLI from the core, by relative path. */
const cliFromCore = {
  regex: '^\\.{1,2}/(?:.*/)?cli(?:/|$)',
  message: 'Nothing under src/ except src/cli/** may import from src/cli: arrows point down only (docs/internals.md, Layers).',
};

/**
 * Forbids importing one of the given sibling folders of src/ from a folder of src/.
 * @param {string[]} names
 * @param {string} why
 */
function layers(names, why) {
  return { regex: `^\\.\\./(?:${names.join('|')})(?:/|$)`, message: `${why} (docs/internals.md, Layers).` };
}
const noTransports = layers(['transports'], 'Backends, event buses and channels share connection code through src/clients, never through a transport');
const noOtherEngines = layers(['backends', 'events', 'channels'], 'A transport imports no other kind of engine; shared connection code lives in src/clients');
const controlEngines = layers(['transports', 'backends', 'events'], 'A mailbox engine uses src/clients, or the channel engines below it (sqlite://), never a transport, backend or event bus');
/** The canvas's internals reach the worker through one adapter, src/worker/workflow.ts. */
const canvasFromWorker = {
  regex: '^\\.\\./app/canvas(?:\\.ts)?$',
  message: 'The worker reaches the canvas only through src/worker/workflow.ts, its one adapter (docs/internals.md, Layers).',
};
const cacheBesideEngines = layers(['app', 'worker', 'transports', 'backends', 'events', 'channels', 'control', 'actors', 'beat', 'gateway'], 'The cache tier stands beside the engines: it imports src/clients, protocol, util and errors only');
const clientsBelowAll = layers(['app', 'worker', 'transports', 'backends', 'events', 'channels', 'gateway', 'canvas'], 'src/clients is the bottom layer: it imports only util, errors and protocol');

export default defineConfig(
  // Browser pages (the dashboard, examples' public/ folders) are plain JS with no build step, outside the TS
  // project; the browser tests (test/browser) exercise them.
  { ignores: ['dist/**', 'node_modules/**', 'scripts/*.mjs', 'bin/**', 'src/gateway/dashboard/**', 'examples/*/public/**'] },
  globalIgnores(['dist/**', 'node_modules/**', 'coverage/**', '.tmp/**']),

  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // scripts/*.ts and this file sit outside tsconfig.json's include; they are checked with its compiler options.
        projectService: { allowDefaultProject: ['scripts/*.ts', 'eslint.config.js'], defaultProject: 'tsconfig.json' },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // The five rules shared/STYLE.md names, as errors.
      // node:test's describe/it/test return promises the runner itself tracks; awaiting them is not required.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      // A `default:` is an explicit decision about the remaining members (json.ts's `switch (typeof value)` refuses
      // every type JSON cannot carry there); switches over Fennel's own tagged unions (Outcome, ToSlot) have no
      // default, so a new member is still reported at every switch that forgets it.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-explicit-any': 'error',

      // Relaxed, with reasons:
      // Engines implement async contracts (Transport, ResultBackend, Pool) with synchronous bodies, e.g.
      // better-sqlite3 is synchronous; `async` keeps a throw a rejection, which is what callers expect.
      '@typescript-eslint/require-await': 'off',
      // Re-raising an AbortSignal's reason (typed `any`) is the platform convention: signal.throwIfAborted() does it.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
      // Unions such as `TaskState | string` and `unknown | null` document the values a field is meant to hold,
      // in Celery's terms; the rule only says the compiler widens them, which is known and harmless.
      '@typescript-eslint/no-redundant-type-constituents': 'off',
      // `_name` marks a deliberately unused binding (destructuring a field away, an ignored callback argument).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },

  // Type-level tests bind values only to inspect their types.
  {
    files: ['test/types/**/*.ts'],
    rules: { '@typescript-eslint/no-unused-vars': 'off' },
  },

  // Layering. A later config object replaces (does not merge) a rule's options, so each folder gets the full list.
  {
    files: ['src/**/*.ts'],
    ignores: ['src/clients/**', 'src/transports/**', 'src/backends/**', 'src/events/**', 'src/channels/**', 'src/control/**', 'src/cli/**', 'src/cache/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries, cliFromCore] }] },
  },
  {
    files: ['src/worker/**/*.ts'],
    ignores: ['src/worker/workflow.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries, cliFromCore, canvasFromWorker] }] },
  },
  {
    files: ['src/clients/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [cliFromCore, clientsBelowAll] }] },
  },
  {
    files: ['src/transports/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries, cliFromCore, noOtherEngines] }] },
  },
  {
    files: ['src/backends/**/*.ts', 'src/events/**/*.ts', 'src/channels/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries, cliFromCore, noTransports] }] },
  },
  {
    files: ['src/cache/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries, cliFromCore, cacheBesideEngines] }] },
  },
  {
    files: ['src/control/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries, cliFromCore, controlEngines] }] },
  },
  {
    files: ['src/cli/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [clientLibraries] }] },
  },
  // No import cycles under src/. Type-only imports are not counted: they vanish when compiled (app/task.ts and
  // app/fennel.ts name each other's types).
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js'] })], 'import-x/extensions': ['.ts', '.js'], 'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] } },
    rules: { 'import-x/no-cycle': ['error', { ignoreExternal: true }] },
  },
);
