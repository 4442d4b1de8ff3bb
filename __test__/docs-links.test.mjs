// The manual's links: every relative link in README.md, CONTRIBUTING.md, BENCHMARKS.md and docs/ points at a file
// of this repository, and every `#anchor` on a markdown page at one of its headings (GitHub's slugs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manualPages } from './helpers/manual-pages.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

const pages = () => manualPages(['README.md', 'CONTRIBUTING.md', 'BENCHMARKS.md']);

/** GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`. */
const slug = (heading) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

function anchors(path) {
  const text = readFileSync(path, 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1])));
}

test('every relative link of the manual resolves to a file, and every anchor to a heading', () => {
  const broken = [];
  let links = 0;
  for (const page of pages()) {
    const text = readFileSync(page, 'utf8')
      .replace(/```[\s\S]*?```/g, '')
      .replace(/`[^`\n]*`/g, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target)) continue;
      links++;
      const [file, anchor] = target.split('#');
      const path = file === '' ? page : join(dirname(page), file);
      const where = `${relative(root, page)} -> ${target}`;
      if (!existsSync(path)) broken.push(`${where}: no such file`);
      else if (anchor !== undefined && path.endsWith('.md') && !anchors(path).has(anchor)) broken.push(`${where}: no such heading`);
    }
  }
  assert.ok(links > 40, `${links} links read`);
  assert.deepEqual(broken, []);
});
