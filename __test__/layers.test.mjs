// The floor plan of js/, held against the code's own imports (type-only ones included): each folder imports only
// folders below it on the map, no import cycle between files, the session rule imports nothing at run time, each
// registered symbol is declared once, and no file of the distributed tier outgrows a reader.
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
  [['errors.ts', 'text.ts', 'types.ts', 'validate.ts', 'config.ts', 'limits/types.ts']],
  [['addon/'], ['tracing.ts'], ['net/']],
  [['limits/']],
  [['core/']],
  [['worker/'], ['redis/rules/']],
  [['redis/common/']],
  [['redis/log/'], ['postgres/log/']],
  [['redis/engine/']],
  [['redis/clients/'], ['redis/limiter/'], ['postgres/clients/']],
  [['redis/testing/']],
  [['redis/index.ts'], ['postgres/index.ts']],
  [['integrations/']],
  [['index.ts', 'testing.ts', 'replay-cli.ts']],
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

/** The file a relative specifier names, as a path under js/, or null (a package, or outside js/). */
function resolve(from, spec) {
  if (!spec.startsWith('.')) return null;
  const base = join(dirname(from), spec);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts')]) {
    try {
      if (statSync(candidate).isFile()) return relative(JS, candidate);
    } catch {}
  }
  return null;
}

/** The import graph of js/: file -> [{ target, typeOnly }]. */
function graph() {
  const edges = new Map();
  for (const file of sources(JS)) {
    const list = [];
    for (const { spec, typeOnly } of importsOf(readFileSync(file, 'utf8'))) {
      const target = resolve(file, spec);
      if (target !== null) list.push({ target, typeOnly });
    }
    edges.set(relative(JS, file), list);
  }
  return edges;
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
  const rules = [...graph()].filter(([file]) => file.startsWith('redis/rules/'));
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
 * The backends: their folders, and the files of each that are its own (a backend's log and what talks to its server
 * directly). Redis' clients (redis/clients/, redis/limiter/) speak Redis; the engine and the common layer speak
 * only `PartitionLog` and `WorkerBackend` (redis/common/backend.ts). The dashboard's fleet view reads through a
 * FleetStore (redis/common/fleet-store.ts); ENTRIES are the files that may import both backends: the package's
 * entry points, the CLI, and the one file that picks a fleet store by its client.
 */
const BACKENDS = {
  redis: ['redis/log/', 'redis/clients/', 'redis/limiter/', 'redis/index.ts'],
  postgres: ['postgres/'],
};
const ENTRIES = new Set(['index.ts', 'testing.ts', 'replay-cli.ts', 'integrations/dashboard-fleet-store.ts']);
const belongs = (file, folders) => folders.some((f) => (f.endsWith('/') ? file.startsWith(f) : file === f));
const LOGS = { redis: ['redis/log/'], postgres: ['postgres/log/'] };

/** The imports of a backend's files from outside its folders (but for ENTRIES): `<file> -> <target>`. */
export function backendLeaks(edges) {
  const wrong = [];
  for (const [file, list] of edges) {
    if (ENTRIES.has(file)) continue;
    for (const [backend, folders] of Object.entries(BACKENDS)) {
      if (belongs(file, folders)) continue;
      for (const { target, typeOnly } of list) {
        // The Redis backend's testing kit runs on the in-memory log (redis/log/memory-*) and exports through its
        // clients, its own; types are shared vocabulary (a name, an option) the engine's public types still mention.
        if (backend === 'redis' && (file.startsWith('redis/testing/') || typeOnly)) continue;
        if (belongs(target, folders)) wrong.push(`${file} -> ${target}`);
      }
    }
  }
  return wrong;
}

test("nothing outside a backend's folders imports that backend (the engine and common layer import none at run time)", () => {
  assert.deepEqual(backendLeaks(graph()), []);
  // The check itself: the fleet view reaching either backend but through the picker is found; the picker is not.
  const leak = (file, target) => new Map([[file, [{ target, typeOnly: false }]]]);
  assert.deepEqual(backendLeaks(leak('integrations/dashboard-fleet.ts', 'redis/clients/fleet-store.ts')), [
    'integrations/dashboard-fleet.ts -> redis/clients/fleet-store.ts',
  ]);
  assert.deepEqual(backendLeaks(leak('integrations/dashboard-sample.ts', 'redis/log/options.ts')), [
    'integrations/dashboard-sample.ts -> redis/log/options.ts',
  ]);
  assert.deepEqual(
    backendLeaks(new Map([['integrations/dashboard-fleet.ts', [{ target: 'postgres/log/sql.ts', typeOnly: true }]]])),
    ['integrations/dashboard-fleet.ts -> postgres/log/sql.ts'],
  );
  assert.deepEqual(backendLeaks(leak('integrations/dashboard-fleet-store.ts', 'postgres/clients/fleet-store.ts')), []);
  const files = [...graph().keys()];
  assert.ok(files.some((file) => file.startsWith('postgres/log/')) && files.some((file) => file.startsWith('postgres/clients/')));
  // The engine reaches a backend only through what it is handed.
  for (const [file, list] of graph()) {
    if (!file.startsWith('redis/engine/') && !file.startsWith('redis/common/') && !file.startsWith('redis/rules/')) continue;
    for (const { target, typeOnly } of list) {
      assert.ok(typeOnly || !belongs(target, [...LOGS.redis, ...BACKENDS.postgres]), `${file} imports ${target} at run time`);
    }
  }
});

test('the Postgres backend imports nothing of the Redis backend (its log, its clients)', () => {
  const wrong = [];
  for (const [file, list] of graph()) {
    if (!file.startsWith('postgres/')) continue;
    for (const { target } of list) if (belongs(target, BACKENDS.redis)) wrong.push(`${file} -> ${target}`);
  }
  assert.deepEqual(wrong, []);
});

test('no file of the distributed tier (js/redis, js/postgres) is over 800 lines', () => {
  const long = [...sources(join(JS, 'redis')), ...sources(join(JS, 'postgres'))]
    .map((file) => [relative(JS, file), readFileSync(file, 'utf8').split('\n').length])
    .filter(([, lines]) => lines > 800);
  assert.deepEqual(long, []);
});

test('the checks find what they look for: a wrong-way import, a cycle and a type-only import are told apart', () => {
  const edges = new Map([
    ['core/a.ts', [{ target: 'redis/engine/b.ts', typeOnly: true }]],
    ['redis/engine/b.ts', [{ target: 'core/a.ts', typeOnly: false }]],
  ]);
  assert.deepEqual(wrongWay(edges), ['core/a.ts -> redis/engine/b.ts']);
  assert.deepEqual(cycles(edges), [['core/a.ts', 'redis/engine/b.ts']]);
  assert.deepEqual(importsOf("import { type A, type B } from './x';\nimport { c, type D } from './y';"), [
    { spec: './x', typeOnly: true },
    { spec: './y', typeOnly: false },
  ]);
});
