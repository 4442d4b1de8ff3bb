// The manual as a reader meets it in node_modules: every relative link of the packed README and docs/ resolves to a
// file of the package (or is an absolute URL into the repository); no user page (the CHANGELOG included) names a
// test file or an internal issue number; no paragraph, bullet or table cell runs over 120 words; the README stays a front page (under 230 lines).
// docs/guarantees.md may name tests (it maps each promise to them; its "checked by" column is a list, not prose).
// docs/errors.md, generated from the error table (scripts/errors-doc.mjs), is held to the same rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/child.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const MAX_WORDS = 120;
const README_MAX_LINES = 230;
const MAY_NAME_TESTS = new Set(['docs/guarantees.md']);

/** The packed file list, as `npm pack` makes it (no rebuild: --ignore-scripts). */
async function packed() {
  const { stdout } = await run(['pack', '--dry-run', '--ignore-scripts', '--json'], { command: 'npm', cwd: root });
  return new Set(JSON.parse(stdout)[0].files.map((f) => f.path));
}

// The README, the changelog and every page of docs/ that the package ships.
const userPages = (files) =>
  [...files].filter((f) => f === 'README.md' || f === 'CHANGELOG.md' || (f.startsWith('docs/') && f.endsWith('.md'))).sort();

/** Prose without code: fenced blocks dropped, inline code kept (it is read as words). */
const prose = (text) => text.replace(/^```[\s\S]*?^```/gm, '');

/** Paragraphs, bullets and table cells of a page, each as { line, text, column } (column: index of a table cell). */
export function units(text) {
  const out = [];
  let cur = null;
  let fence = false;
  const flush = () => {
    if (cur !== null) out.push(cur);
    cur = null;
  };
  text.split('\n').forEach((line, i) => {
    if (/^\s*```/.test(line)) {
      flush();
      fence = !fence;
      return;
    }
    if (fence) return;
    if (line.trim() === '' || /^#/.test(line) || /^<!--.*-->$/.test(line.trim())) return flush();
    if (/^\s*\|/.test(line)) {
      flush();
      const cells = line.replace(/\\\|/g, '\u0000').split('|').slice(1, -1);
      cells.forEach((cell, column) => out.push({ line: i + 1, text: cell.replace(/\u0000/g, '|'), column, columns: cells.length }));
      return;
    }
    if (/^\s*([-*+]|\d+[.)])\s/.test(line)) flush();
    if (cur === null) cur = { line: i + 1, text: line, column: null };
    else cur.text += ` ${line}`;
  });
  flush();
  return out;
}

export const words = (s) => (s.match(/\S+/g) ?? []).length;

/** Findings for one page: { rule, where } */
export function check(page, text, files) {
  const found = [];
  const body = prose(text);
  // Links: relative ones resolve to a packed file; absolute ones are the reader's business.
  const linkText = body.replace(/`[^`\n]*`/g, '');
  for (const [, target] of linkText.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z][a-z+.-]*:/i.test(target) || target.startsWith('#')) continue;
    const file = normalize(join(dirname(page), target.split('#')[0])).replace(/\\/g, '/');
    if (!files.has(file)) found.push({ rule: 'link outside the package', where: `${page} -> ${target}` });
  }
  for (const [, target] of linkText.matchAll(/<img[^>]*src="([^"]+)"/g)) {
    if (/^[a-z]+:/i.test(target)) continue;
    const file = normalize(join(dirname(page), target)).replace(/\\/g, '/');
    if (!files.has(file)) found.push({ rule: 'image outside the package', where: `${page} -> ${target}` });
  }
  const lines = body.split('\n');
  lines.forEach((line, i) => {
    if (!MAY_NAME_TESTS.has(page) && /__test__\/|\b[\w-]+\.test\.m?[jt]s\b/.test(line)) {
      found.push({ rule: 'test file named', where: `${page}:${i + 1}` });
    }
    if (/\bissues? #?\d+\b|(^|[\s(\[])#\d+\b|\boutside (re-)?pass \d+/i.test(line)) {
      found.push({ rule: 'issue number', where: `${page}:${i + 1}` });
    }
  });
  for (const unit of units(text)) {
    // The last column of guarantees.md lists the tests that check a promise: a reference list, not prose.
    if (MAY_NAME_TESTS.has(page) && unit.column !== null && unit.column === unit.columns - 1 && unit.columns > 1) continue;
    const n = words(unit.text);
    if (n > MAX_WORDS) found.push({ rule: `over ${MAX_WORDS} words (${n})`, where: `${page}:${unit.line}` });
  }
  return found;
}

test('the packed README and docs: links resolve in the package, no test files or issue numbers, short paragraphs', async () => {
  const files = await packed();
  const pages = userPages(files);
  assert.ok(pages.includes('README.md') && pages.length > 20, `${pages.length} user pages packed`);
  const found = pages.flatMap((page) => check(page, readFileSync(join(root, page), 'utf8'), files));
  assert.deepEqual(
    found.map((f) => `${f.rule}: ${f.where}`),
    [],
  );
});

// The figures of the manual, printed for the record (no bound on them here): words per packed page of docs/
// (whitespace-separated, code blocks included), their total and median, the README's lines.
test('the figures of the packed manual', async (t) => {
  const files = await packed();
  const docs = userPages(files).filter((f) => f.startsWith('docs/'));
  const counts = docs.map((f) => words(readFileSync(join(root, f), 'utf8'))).sort((a, b) => a - b);
  const mid = counts.length / 2;
  const median = counts.length % 2 ? counts[Math.floor(mid)] : (counts[mid - 1] + counts[mid]) / 2;
  const total = counts.reduce((a, b) => a + b, 0);
  const longest = Math.max(
    ...userPages(files).flatMap((f) =>
        units(readFileSync(join(root, f), 'utf8'))
          .filter((u) => !(MAY_NAME_TESTS.has(f) && u.column !== null && u.columns > 1 && u.column === u.columns - 1))
          .map((u) => words(u.text)),
      ),
  );
  t.diagnostic(`docs/ pages: ${docs.length}, words: ${total}, median per page: ${median}, longest paragraph: ${longest}`);
});

test(`the README is a front page: under ${README_MAX_LINES} lines`, () => {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').replace(/\n$/, '').split('\n').length;
  assert.ok(lines < README_MAX_LINES, `README.md has ${lines} lines`);
});

test('package.json points a reader of the package at the repository', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  assert.match(pkg.repository?.url ?? '', /^git\+https:\/\/github\.com\/velo-stream\/velo-stream\.git$/);
  assert.match(pkg.homepage ?? '', /^https:\/\/github\.com\/velo-stream\/velo-stream/);
  assert.match(pkg.bugs?.url ?? '', /^https:\/\/github\.com\/velo-stream\/velo-stream\/issues$/);
});

test('the check fails on what it forbids', () => {
  const files = new Set(['README.md', 'docs/a.md']);
  const long = Array.from({ length: MAX_WORDS + 1 }, () => 'word').join(' ');
  const page = [
    '# A page',
    '[ok](a.md) [ok too](https://github.com/velo-stream/velo-stream/blob/main/examples/demo.mjs) [bad](../examples/demo.mjs)',
    '',
    'Checked by `__test__/redis.test.mjs`, fixed in issue 53 and (#54).',
    '',
    long,
    `- ${long}`,
    `| a | ${long} |`,
    '```js',
    long,
    '```',
  ].join('\n');
  const rules = check('docs/a.md', page, files).map((f) => f.rule);
  assert.deepEqual(rules, [
    'link outside the package',
    'test file named',
    'issue number',
    `over ${MAX_WORDS} words (${MAX_WORDS + 1})`,
    `over ${MAX_WORDS} words (${MAX_WORDS + 2})`,
    `over ${MAX_WORDS} words (${MAX_WORDS + 1})`,
  ]);
});
