// The SQL of velo-stream/postgres that is the same at every call (the functions and tables of a migration), each in
// its own file under sql/ (copied beside the compiled module by the build, as the Redis scripts' lua/), read once
// when the module that names it loads. In a file, `:S` stands for the schema (quoted) and `:NOW` for the server's
// clock in ms (NOW, the log's); a statement ends with `;` at the end of a line outside a $f$ body, and the `--`
// lines between statements are for the reader (not sent). What a statement holds (its comments inside a body too)
// is sent as written.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NOW } from './sql';

/** The statements of `file` (under sql/), without their `;`, as written but for the placeholders. */
function statements(file: string): string[] {
  const text = readFileSync(join(__dirname, 'sql', file), 'utf8');
  const out: string[] = [];
  let current: string[] = [];
  let inBody = false;
  for (const line of text.split('\n')) {
    if (!inBody && current.length === 0 && (line.trim() === '' || line.trimStart().startsWith('--'))) continue;
    // (Each $f$ opens or closes a body: `AS $f$ ... $f$` on one line does both.)
    inBody = (line.split('$f$').length - 1) % 2 === 1 ? !inBody : inBody;
    if (!inBody && line.endsWith(';')) {
      current.push(line.slice(0, -1));
      out.push(current.join('\n'));
      current = [];
    } else current.push(line);
  }
  if (current.some((line) => line.trim() !== '' && !line.trimStart().startsWith('--')))
    throw new Error(`sql/${file}: its last statement does not end with ";"`);
  return out;
}

/** A file's statements for schema `S` (quoted): read and split now, the placeholders filled at each call. */
export function sqlFile(file: string): (S: string) => string[] {
  const parts = statements(file).map((statement) => statement.split(/:(S|NOW)\b/));
  // (split with a group: even indexes are text, odd ones the placeholder's name.)
  return (S) => parts.map((p) => p.map((part, i) => (i % 2 === 0 ? part : part === 'S' ? S : NOW)).join(''));
}
