// The manual's Markdown pages, as the docs tests (links, code blocks) walk them.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Absolute paths: the `top` pages at the repository's root, then every .md under docs/ (depth first, readdir order). */
export function manualPages(top) {
  const out = top.map((f) => join(root, f));
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.md')) out.push(path);
    }
  };
  walk(join(root, 'docs'));
  return out;
}
