// The manual's code: every JavaScript or TypeScript block in README.md, CONTRIBUTING.md and docs/ either runs here,
// as a user would paste it into a file of a project that has velo-stream installed (TypeScript transpiled by the
// repository's own `typescript`; exit code 0, stderr clean), or is marked as a fragment on purpose with an HTML
// comment on the line before it: `<!-- fragment: why -->` (it needs a server, a model, names defined elsewhere).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { run } from './helpers/child.mjs';
import { manualPages } from './helpers/manual-pages.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

const pages = () => manualPages(['README.md', 'CONTRIBUTING.md']);

/** Every ```js / ```ts block: { page, line, lang, code, fragment (the reason, or null) }. */
function blocks() {
  const out = [];
  for (const page of pages()) {
    const lines = readFileSync(page, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^```(js|javascript|mjs|ts|typescript)\s*$/.exec(lines[i]);
      if (open === null) continue;
      const end = lines.indexOf('```', i + 1);
      const marker = /^<!-- fragment: (.+) -->$/.exec(lines[i - 1] ?? '');
      out.push({
        page: relative(root, page),
        line: i + 1,
        lang: open[1].startsWith('t') ? 'ts' : 'js',
        code: lines.slice(i + 1, end).join('\n'),
        fragment: marker?.[1] ?? null,
      });
      i = end;
    }
  }
  return out;
}

const all = blocks();

test('every block of the manual runs or is marked as a fragment, with a reason', () => {
  assert.ok(all.length > 20, `${all.length} blocks found`);
  assert.ok(
    all.some((b) => b.fragment === null),
    'some blocks run',
  );
});

// Inside the repository, so that `velo-stream` resolves to this package (a package may import itself by name).
const dir = join(root, '__test__', '.doc-blocks');

for (const block of all.filter((b) => b.fragment === null)) {
  test(`${block.page}:${block.line} runs`, async () => {
    mkdirSync(dir, { recursive: true });
    const code =
      block.lang === 'ts'
        ? ts.transpileModule(block.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
            .outputText
        : block.code;
    const file = join(dir, `${block.page.replace(/[/.]/g, '-')}-${block.line}.mjs`);
    writeFileSync(file, code);
    try {
      const { stderr } = await run([file], { timeout: 20_000 });
      assert.equal(stderr, '');
    } finally {
      rmSync(file, { force: true });
    }
  });
}

// A node-redis client without an 'error' listener ends the process on a lost connection (a Redis restart emits
// 'error' with no one listening): every client the manual and the examples make has one, so copied code keeps it.
test("every node-redis client the manual and the examples create has an 'error' listener", () => {
  const sources = all.map((b) => [`${relative(root, b.page)}:${b.line}`, b.code]);
  const examples = join(root, 'examples');
  for (const name of readdirSync(examples)) {
    if (name.endsWith('.mjs')) sources.push([`examples/${name}`, readFileSync(join(examples, name), 'utf8')]);
  }
  const missing = [];
  for (const [where, code] of sources) {
    const created = code.match(/\bcreate(Client|Cluster)\(/g)?.length ?? 0;
    const listened = code.match(/\.on\(\s*'error'/g)?.length ?? 0;
    if (created > listened) missing.push(`${where}: ${created} created, ${listened} 'error' listeners`);
  }
  assert.deepEqual(missing, []);
});
