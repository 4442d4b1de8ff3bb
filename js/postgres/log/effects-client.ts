// The client a commit's `effects` get: the commit's own connection, in its transaction, behind a thin guard. A
// transaction-control statement would end velo-stream's transaction under it (the rest of the commit would run in
// autocommit, and a failure after it would lose outputs), and a call after the callback settled would run inside
// whatever transaction the connection runs next: both are refused (ERR_VELO_EFFECTS_CLIENT). Savepoints are safe
// (SAVEPOINT, RELEASE, ROLLBACK TO) and allowed.
import { effectsClientError } from '../../errors';
import type { PgClientLike, PgResult } from './sql';

/**
 * A transaction-control statement's start, in a statement whose comments are spaces (`statements`): ROLLBACK TO (a
 * savepoint's) is not one.
 */
const CONTROL =
  /^(?:begin|start\s+transaction|commit|end|abort|prepare\s+transaction|rollback(?!\s+(?:(?:work|transaction)\s+)?to\b))\b/i;

/** A character of an identifier after its first (Postgres: letters, digits, `_`, `$` and any non-ASCII). */
const IDENTIFIER_PART = /[\w$\u0080-\uffff]/;

/** A character that may start an identifier or a key word. */
const WORD_START = /[A-Za-z_\u0080-\uffff]/;

/** A dollar quote's tag at `lastIndex` (`$$`, `$body$`: of any length). */
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$/y;

/**
 * Where a string's continuation starts after `i` (`'a'\n'b'` is `'ab'`, and an E'...' string's escapes carry on into
 * it): the quote after white space with a line break in it (`--` comments too, each to its line's end), or -1.
 */
function continuation(text: string, i: number): number {
  let broken = false;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n' || c === '\r') {
      broken = true;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\f' || c === '\v') i++;
    else if (c === '-' && text[i + 1] === '-') {
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
    } else return broken && c === "'" ? i : -1;
  }
  return -1;
}

/**
 * The statements of `text` as Postgres splits them: at each `;` outside quoted text ('...' with '' inside, E'...'
 * with backslash escapes, "..." identifiers, $tag$...$tag$ bodies), comments (`--` to the line's end at `\n` or
 * `\r`, `/* *\/` nested) and the SQL-standard body of a routine (`CREATE [OR REPLACE] FUNCTION | PROCEDURE ... BEGIN
 * ATOMIC ... END`, CASE ... END inside it), each statement without its leading white space and comments, and each
 * comment in it a space. Text after an unclosed quote, comment or body is not split further (Postgres refuses it
 * anyway). One pass.
 */
export function statements(text: string): string[] {
  const out: string[] = [];
  let start = -1;
  // (The statement's text so far, with its comments as spaces, up to `from`.)
  let made = '';
  let from = -1;
  const n = text.length;
  let i = 0;
  // The statement's first words (lower case, up to 4: a routine's CREATE), the word before, its parentheses open
  // (a routine's parameters, its RETURNS TABLE), and the depth of its BEGIN ATOMIC body (1 in it, one more per CASE
  // inside; a `;` there is the body's). The body begins only outside parentheses: `f(begin atomic)` is a parameter.
  let words: string[] = [];
  let routine = false;
  let previous = '';
  let parens = 0;
  let body = 0;
  const end = (at: number) => {
    if (start >= 0) out.push(made + text.slice(from, at));
    start = -1;
    words = [];
    routine = false;
    previous = '';
    parens = 0;
    body = 0;
  };
  /** A comment from `i` to `to`: a space in the statement, if one started. */
  const comment = (to: number) => {
    if (start >= 0) {
      made += `${text.slice(from, i)} `;
      from = to;
    }
    i = to;
  };
  while (i < n) {
    const c = text[i];
    if (c === '-' && text[i + 1] === '-') {
      let eol = i + 2;
      while (eol < n && text[eol] !== '\n' && text[eol] !== '\r') eol++;
      comment(Math.min(eol + 1, n));
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (text[j] === '/' && text[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (text[j] === '*' && text[j + 1] === '/') {
          depth--;
          j += 2;
        } else j++;
      }
      comment(j);
      continue;
    }
    if (c === ';') {
      if (body === 0) end(i);
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (start < 0) {
      start = i;
      from = i;
      made = '';
    }
    if (c === "'" || c === '"') {
      // (E'...' strings: a backslash escapes the next character, also in a continuation of one. An E that ends an
      // identifier, `a$e'...'`, is not one.)
      const escapes = c === "'" && i > 0 && /[eE]/.test(text[i - 1]) && (i < 2 || !IDENTIFIER_PART.test(text[i - 2]));
      for (;;) {
        i++;
        while (i < n) {
          if (escapes && text[i] === '\\') i += 2;
          else if (text[i] === c && text[i + 1] === c) i += 2;
          else if (text[i] === c) break;
          else i++;
        }
        i++;
        const next = escapes ? continuation(text, i) : -1;
        if (next < 0) break;
        i = next;
      }
      continue;
    }
    if (WORD_START.test(c) && (i === 0 || !IDENTIFIER_PART.test(text[i - 1]))) {
      let j = i + 1;
      while (j < n && IDENTIFIER_PART.test(text[j])) j++;
      // (Only a routine's words are looked at past its first four.)
      if (words.length < 4 || routine) {
        const word = text.slice(i, j).toLowerCase();
        if (words.length < 4) {
          words.push(word);
          routine =
            words[0] === 'create' &&
            (isRoutine(words[1]) || (words[1] === 'or' && words[2] === 'replace' && isRoutine(words[3])));
        }
        if (routine) {
          if (word === 'atomic' && previous === 'begin' && body === 0 && parens === 0) body = 1;
          else if (body > 0 && word === 'case') body++;
          else if (body > 0 && word === 'end') body--;
          previous = word;
        }
      }
      // (An E or U& before a quote is looked at there: the quote's own branch reads the character before it.)
      i = j;
      continue;
    }
    if (c === '$') {
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(text);
      if (tag !== null && (i === 0 || !IDENTIFIER_PART.test(text[i - 1]))) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
        continue;
      }
    }
    if (routine && body === 0) {
      if (c === '(') parens++;
      else if (c === ')' && parens > 0) parens--;
    }
    i++;
  }
  end(n);
  return out;
}

function isRoutine(word: string | undefined): boolean {
  return word === 'function' || word === 'procedure';
}

/** The transaction-control statement `text` holds (any of its statements), or undefined. */
export function controlStatement(text: string): string | undefined {
  for (const statement of statements(text)) {
    const m = CONTROL.exec(statement);
    if (m !== null) return m[0].replace(/\s+/g, ' ').toUpperCase();
  }
  return undefined;
}

/** The guarded client of one `effects` call, and `settle()`, called once the callback has settled. */
export function effectsClient(client: PgClientLike): { client: Pick<PgClientLike, 'query'>; settle(): void } {
  let settled = false;
  const query = (config: string | { text: string }, values?: unknown[]): Promise<PgResult> => {
    if (settled) {
      return Promise.reject(
        effectsClientError(
          'The effects client was used after the effects callback settled: its commit is over (await every query before the callback returns).',
        ),
      );
    }
    const text = typeof config === 'string' ? config : config?.text;
    if (
      typeof text !== 'string' ||
      (typeof config === 'object' && typeof (config as { submit?: unknown }).submit === 'function')
    ) {
      return Promise.reject(
        effectsClientError(
          'The effects client takes a statement as its text, or a config object with a string `text` (not a prepared name alone, nor a Submittable such as a cursor or a stream).',
        ),
      );
    }
    const control = controlStatement(text);
    if (control !== undefined) {
      return Promise.reject(
        effectsClientError(
          `The effects client refuses ${control}: velo-stream commits or rolls back the commit's transaction itself (savepoints are allowed).`,
        ),
      );
    }
    // (The text checked is the text sent: a config object is passed on as a copy with it.)
    const statement = typeof config === 'string' ? config : { ...config, text };
    return values === undefined ? client.query(statement as string) : client.query(statement as string, values);
  };
  return {
    client: { query },
    settle: () => {
      settled = true;
    },
  };
}
