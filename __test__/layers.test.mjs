// The floor plan of js/, held against the code's own imports (type-only ones included): each folder imports only
// folders below it on the map, no import cycle between files, the session rule imports nothing at run time, each
// registered symbol is declared once, and no file outgrows a reader (one is named, with why).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const JS = join(ROOT, 'js');

/**
 * The map, from the bottom up: a file may import files of its own room and of rooms on lower floors. A room is a
 * folder of js/ (`name/`) or files; a floor is a list of rooms.
 */
const FLOORS = [
  [['errors/', 'io-deadline.ts', 'text.ts', 'types.ts', 'validate.ts', 'watch-abort.ts', 'config.ts', 'limits/types.ts']],
  [['addon/'], ['tracing.ts'], ['net/']],
  [['limits/']],
  [['core/']],
  [['worker/'], ['durable/rules/']],
  [['durable/common/']],
  [['durable/memory/'], ['redis/log/'], ['postgres/log/']],
  [['durable/engine/']],
  [['durable/testing/'], ['redis/clients/'], ['redis/limiter/'], ['postgres/clients/']],
  [
    ['redis/index.ts', 'redis/service.ts'],
    ['postgres/index.ts', 'postgres/service.ts'],
  ],
  [['integrations/']],
  [['index.ts', 'test-hooks.ts', 'replay-cli.ts', 'testing/', 'backends/']],
];

function roomOf(path) {
  for (const [floor, rooms] of FLOORS.entries()) {
    for (const room of rooms) {
      if (room.some((p) => (p.endsWith('/') ? path.startsWith(p) : path === p))) return { floor, room: room.join(' ') };
    }
  }
  return null;
}

function sources(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

const IMPORT =
  /(?:^|\n)\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)|require\(\s*'([^']+)'\s*\)/g;

/** Every import of a file: `{ spec, typeOnly }` (an `import { type A, type B }` is type-only too). */
export function importsOf(text) {
  const found = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[4] ?? m[5] ?? m[6];
    let typeOnly = m[2] !== undefined;
    if (!typeOnly && m[3] !== undefined) {
      const braces = /^\{([^}]*)\}$/.exec(m[3].trim());
      if (braces !== null) {
        const names = braces[1]
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        typeOnly = names.length > 0 && names.every((n) => n.startsWith('type '));
      }
    }
    found.push({ spec, typeOnly });
  }
  return found;
}

/**
 * The file a relative specifier names, as a path under js/, or null (a package, or outside js/). `./x.js` names
 * `x.ts`, as TypeScript resolves it under the project's settings; `files` lists the paths under js/ that exist.
 */
export function resolve(from, spec, files = FILES) {
  if (!spec.startsWith('.')) return null;
  let base = relative(JS, join(JS, dirname(from), spec));
  if (base.endsWith('.js')) base = base.slice(0, -3);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts')]) if (files.has(candidate)) return candidate;
  return null;
}

const FILES = new Set(sources(JS).map((file) => relative(JS, file)));

/** The import graph of `texts` (path under js/ -> source text): file -> [{ target, typeOnly }]. */
export function graphOf(texts) {
  const files = new Set(texts.keys());
  const edges = new Map();
  for (const [file, text] of texts) {
    const list = [];
    for (const { spec, typeOnly } of importsOf(text)) {
      const target = resolve(file, spec, files);
      if (target !== null) list.push({ target, typeOnly });
    }
    edges.set(file, list);
  }
  return edges;
}

const TEXTS = new Map([...FILES].map((file) => [file, readFileSync(join(JS, file), 'utf8')]));

/** The import graph of js/: file -> [{ target, typeOnly }]. */
function graph() {
  return graphOf(TEXTS);
}

/** The cycles of a graph (its strongly connected components of more than one file, or a file importing itself). */
export function cycles(edges) {
  let index = 0;
  const order = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const found = [];
  const visit = (v) => {
    order.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const { target: w } of edges.get(v) ?? []) {
      if (!order.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), order.get(w)));
    }
    if (low.get(v) === order.get(v)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (edges.get(v) ?? []).some((e) => e.target === v)) found.push(component.sort());
    }
  };
  for (const v of edges.keys()) if (!order.has(v)) visit(v);
  return found;
}

/** The imports against the map: `<file> -> <target>` where the target's floor is above the file's, or off the map. */
export function wrongWay(edges) {
  const wrong = [];
  for (const [file, list] of edges) {
    const from = roomOf(file);
    if (from === null) {
      wrong.push(`${file}: not on the map`);
      continue;
    }
    for (const { target } of list) {
      const to = roomOf(target);
      if (to === null) wrong.push(`${file} -> ${target}: not on the map`);
      else if (to.room !== from.room && to.floor >= from.floor) wrong.push(`${file} -> ${target}`);
    }
  }
  return wrong;
}

test('every import of js/ follows the floor plan: a room imports its own files and rooms of lower floors only', () => {
  assert.deepEqual(wrongWay(graph()), []);
});

test('no import cycle between the files of js/, type-only imports included', () => {
  assert.deepEqual(cycles(graph()), []);
});

test('the session rule imports nothing at run time (types only)', () => {
  const rules = [...graph()].filter(([file]) => file.startsWith('durable/rules/'));
  assert.ok(rules.length > 0);
  for (const [file, list] of rules) {
    for (const { target, typeOnly } of list) assert.ok(typeOnly, `${file} imports ${target} at run time`);
    for (const { spec, typeOnly } of importsOf(readFileSync(join(JS, file), 'utf8')))
      assert.ok(typeOnly, `${file} imports ${spec} at run time`);
  }
});

test('each registered symbol (Symbol.for) of velo-stream is declared once', () => {
  const seen = new Map();
  for (const file of sources(JS)) {
    for (const m of readFileSync(file, 'utf8').matchAll(/Symbol\.for\('(velo-stream[^']*)'\)/g)) {
      const where = relative(JS, file);
      assert.ok(!seen.has(m[1]), `${m[1]} is declared in ${seen.get(m[1])} and in ${where}`);
      seen.set(m[1], where);
    }
  }
  assert.ok(seen.size > 10);
});

/**
 * The tier and its backends. js/durable/ is the tier: the session rule, the engine, the in-memory log, the testing
 * kit and what every backend shares; it speaks only `PartitionLog` and `WorkerBackend` (durable/common/backend.ts)
 * and imports no backend, not even a type. js/redis/ and js/postgres/ are the backends: each its log, its store calls
 * (Lua or SQL) and its clients; neither imports the other. Outside them, only ENTRIES may import a backend: the
 * package's entry points, the CLI, and the files that pick a backend by the client they are given.
 */
const BACKENDS = { redis: ['redis/'], postgres: ['postgres/'] };
const TIER = ['durable/'];
const ENTRIES = new Set([
  'index.ts',
  'test-hooks.ts',
  'replay-cli.ts',
  'testing/index.ts',
  'integrations/dashboard-fleet-store.ts',
  // velo-stream/durable: the one place that picks a backend by its client.
  'backends/',
]);
const belongs = (file, folders) => folders.some((f) => (f.endsWith('/') ? file.startsWith(f) : file === f));

/** The imports that cross the tier's walls (type-only included): `<file> -> <target>`. */
export function backendLeaks(edges) {
  const wrong = [];
  for (const [file, list] of edges) {
    for (const { target } of list) {
      const own = Object.entries(BACKENDS).find(([, folders]) => belongs(file, folders))?.[0];
      const to = Object.entries(BACKENDS).find(([, folders]) => belongs(target, folders))?.[0];
      if (to === undefined || to === own) continue;
      // The tier imports no backend; a backend no other; anything else only through ENTRIES.
      if (belongs(file, TIER) || own !== undefined || !belongs(file, [...ENTRIES])) wrong.push(`${file} -> ${target}`);
    }
  }
  return wrong;
}

test('the tier imports no backend, no backend imports another, and only the entry points and pickers import one', () => {
  assert.deepEqual(backendLeaks(graph()), []);
  const files = [...graph().keys()];
  for (const folder of [
    'durable/rules/',
    'durable/engine/',
    'durable/memory/',
    'durable/testing/',
    'redis/log/',
    'postgres/log/',
  ])
    assert.ok(
      files.some((file) => file.startsWith(folder)),
      folder,
    );
});

test('the checks of the walls find a planted import, written with a .js specifier too', () => {
  const plant = (file, text) => graphOf(new Map([...TEXTS, [file, text]]));
  // The tier reaching a backend, as a type, with a `.js` specifier TypeScript accepts.
  const engine = 'durable/engine/planted.ts';
  assert.deepEqual(backendLeaks(plant(engine, "import type { RedisOptions } from '../../redis/log/options.js';\n")), [
    'durable/engine/planted.ts -> redis/log/options.ts',
  ]);
  // One backend reaching the other.
  const pg = 'postgres/log/planted.ts';
  assert.deepEqual(backendLeaks(plant(pg, "import { RedisLog } from '../../redis/log/redis-log.js';\n")), [
    'postgres/log/planted.ts -> redis/log/redis-log.ts',
  ]);
  // The fleet view reaching a backend but through the picker.
  const fleet = 'integrations/planted.ts';
  assert.deepEqual(backendLeaks(plant(fleet, "import { x } from '../postgres/clients/fleet-store.js';\n")), [
    'integrations/planted.ts -> postgres/clients/fleet-store.ts',
  ]);
  assert.deepEqual(
    backendLeaks(plant('integrations/dashboard-fleet-store.ts', "import { x } from '../postgres/clients/fleet-store.js';\n")),
    [],
  );
  // A wrong-way import and a cycle written with `.js` are found by the floor plan too.
  const rules = 'durable/rules/planted.ts';
  assert.deepEqual(wrongWay(plant(rules, "import { x } from '../engine/worker.js';\n")), [
    'durable/rules/planted.ts -> durable/engine/worker.ts',
  ]);
  const a = 'core/planted-a.ts';
  const b = 'core/planted-b.ts';
  const both = graphOf(
    new Map([
      [a, "import { b } from './planted-b.js';\n"],
      [b, "import { a } from './planted-a';\n"],
    ]),
  );
  assert.deepEqual(cycles(both), [[a, b]]);
});

/**
 * Files of js/ allowed past 800 lines, each with why. core/stream.ts is one class, HandlerStream: the private state
 * of a running stream that every event, output and read goes through. Its parts (sends, the handler's input, outputs
 * and readers, the ending) read and write the same fields on the per-event path; split across objects, each event
 * would cross them.
 */
const LONG_BY_DESIGN = new Set(['core/stream.ts']);

test('no file of js/ is over 800 lines (but the one named, with its reason)', () => {
  const long = sources(JS)
    .map((file) => [relative(JS, file), readFileSync(file, 'utf8').split('\n').length])
    .filter(([path, lines]) => lines > 800 && !LONG_BY_DESIGN.has(path));
  assert.deepEqual(long, []);
  for (const path of LONG_BY_DESIGN) {
    assert.ok(readFileSync(join(JS, path), 'utf8').split('\n').length > 800, `${path} is short now: take it off the list`);
  }
});

test('the checks find what they look for: a wrong-way import, a cycle and a type-only import are told apart', () => {
  const edges = new Map([
    ['core/a.ts', [{ target: 'durable/engine/b.ts', typeOnly: true }]],
    ['durable/engine/b.ts', [{ target: 'core/a.ts', typeOnly: false }]],
  ]);
  assert.deepEqual(wrongWay(edges), ['core/a.ts -> durable/engine/b.ts']);
  assert.deepEqual(cycles(edges), [['core/a.ts', 'durable/engine/b.ts']]);
  assert.deepEqual(importsOf("import { type A, type B } from './x';\nimport { c, type D } from './y';"), [
    { spec: './x', typeOnly: true },
    { spec: './y', typeOnly: false },
  ]);
});
