// The client a commit's `effects` get: the commit's own connection, in its transaction, behind a thin guard. A
// transaction-control statement would end velo-stream's transaction under it (the rest of the commit would run in
// autocommit, and a failure after it would lose outputs), and a call after the callback settled would run inside
// whatever transaction the connection runs next: both are refused (ERR_VELO_EFFECTS_CLIENT). Savepoints are safe
// (SAVEPOINT, RELEASE, ROLLBACK TO) and allowed.
//
// The server has the last word on what the client misreads (text read under standard_conforming_strings off, say):
// a text sent by the simple protocol, which may hold several statements, is sent with the transaction's mark checked
// after them (`MARK_CHECK`). Had a statement of it ended the transaction, the check fails, and the statements after
// that end, which ran in an implicit transaction of their own, roll back with it; the client then refuses every
// later call. A statement sent by the extended protocol is one statement (the server refuses more), read whole here.
import { effectsClientError } from '../../errors';
import { USER_STATEMENT } from './gate';
import { MARK_CHECK, markCheckFailed, type PgClientLike, type PgResult } from './sql';

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
  /** A `.` came after the routine's last word: the next is a name's part. */
  let dotted = false;
  const end = (at: number) => {
    if (start >= 0) out.push(made + text.slice(from, at));
    start = -1;
    words = [];
    routine = false;
    previous = '';
    parens = 0;
    body = 0;
    dotted = false;
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
          // (A label is no key word: `AS case`, `t.end`. A bare label, `SELECT 1 case`, is read as one: the check
          // after a simple text has the last word, see the file's comment.)
          const label = previous === 'as' || dotted;
          if (word === 'atomic' && previous === 'begin' && body === 0 && parens === 0) body = 1;
          else if (body > 0 && word === 'case' && !label) body++;
          else if (body > 0 && word === 'end' && !label) body--;
          previous = word;
          dotted = false;
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
    if (routine && c === '.') dotted = true;
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
  return controlIn(statements(text));
}

function controlIn(list: readonly string[]): string | undefined {
  for (const statement of list) {
    const m = CONTROL.exec(statement);
    if (m !== null) return m[0].replace(/\s+/g, ' ').toUpperCase();
  }
  return undefined;
}

/** A statement as the effects client sends it: node-postgres' query config, each field read once, as a plain object. */
interface Statement {
  text: string;
  values?: unknown[];
  [field: string]: unknown;
}

/** The fields of a query config node-postgres reads, but its text, values and callback. */
const FIELDS = ['name', 'rows', 'types', 'queryMode', 'binary', 'portal', 'rowMode', 'query_timeout'] as const;

const TAKES =
  'The effects client takes a statement as its text, or a config object with a string `text` (not a prepared name alone, nor a Submittable such as a cursor or a stream), and an array of its values, and answers with a promise: no callback (await the call instead).';

/**
 * The statement of a call `tx.query(config, values)` as node-postgres would make it (a truthy `values` in place of
 * the config's), each field read once (through getters and prototypes, as node-postgres reads them) into an object
 * without a prototype, the values copied into an array: so that what is sent is what was checked. A callback (node-postgres
 * answers through it alone: the call could not be awaited), values not in an array, a Submittable or no string
 * text is refused.
 */
function statementOf(config: unknown, values: unknown, rest: readonly unknown[]): Statement {
  if (rest.some((x) => x !== undefined)) throw effectsClientError(TAKES);
  let call: Statement;
  let given: unknown;
  if (typeof config === 'string') call = bare(config);
  else if (typeof config === 'object' && config !== null) {
    const c = config as Record<string, unknown>;
    const text = c.text;
    if (typeof text !== 'string' || typeof c.submit === 'function' || c.callback !== undefined) throw effectsClientError(TAKES);
    call = bare(text);
    for (const field of FIELDS) {
      const value = c[field];
      if (value !== undefined) call[field] = value;
    }
    given = c.values;
  } else throw effectsClientError(TAKES);
  // (node-postgres takes a truthy second argument as the values, or as the callback when a function.)
  if (values) given = values;
  if (given === undefined || given === null) return call;
  if (!Array.isArray(given)) throw effectsClientError(TAKES);
  call.values = Array.prototype.slice.call(given) as unknown[];
  return call;
}

/**
 * A statement of `text` with no prototype: a field it has not (a getter someone put on Object.prototype) reads as
 * undefined, for the check as for node-postgres.
 */
function bare(text: string): Statement {
  const call = Object.create(null) as Statement;
  call.text = text;
  return call;
}

/** Whether node-postgres sends `call` by the simple protocol (its `Query.requiresPreparation` says no). */
function simpleProtocol(call: Statement): boolean {
  if (call.queryMode === 'extended' || Boolean(call.name) || Boolean(call.rows)) return false;
  return call.values === undefined || call.values.length === 0;
}

/** Why a text's statements were rolled back and the client refuses more: a statement of it ended the transaction. */
const ENDED_IN_TEXT =
  "The effects client's text ended the commit's transaction (a COMMIT or ROLLBACK in it that the client did not read " +
  'as one, as with standard_conforming_strings off): its statements after that end were rolled back, the client ' +
  'takes no more calls, and the commit is retried. Never end the transaction in effects (savepoints are allowed).';

/**
 * One call of `effects` with `written` on the guarded client of `client`: its failure, or, had a text of it ended the
 * transaction (a failure the callback caught), that.
 */
export async function runEffects<W>(
  client: PgClientLike,
  effects: (client: PgClientLike, written: W) => Promise<void>,
  written: W,
): Promise<void> {
  const guarded = effectsClient(client);
  try {
    await effects(guarded.client as PgClientLike, written);
  } finally {
    guarded.settle();
  }
  const ended = guarded.ended();
  if (ended !== undefined) throw ended;
}

/** The guarded client of one `effects` call, `settle()`, called once the callback has settled, and `ended()`. */
export function effectsClient(client: PgClientLike): {
  client: Pick<PgClientLike, 'query'>;
  settle(): void;
  /** The failure of a text that ended the transaction, if one did. */
  ended(): Error | undefined;
} {
  let settled = false;
  /** The failure of a text that ended the transaction: every later call fails with it. */
  let ended: Error | undefined;
  const query = (config: unknown, values?: unknown, ...rest: unknown[]): Promise<PgResult> => {
    if (ended !== undefined) return Promise.reject(ended);
    if (settled) {
      return Promise.reject(
        effectsClientError(
          'The effects client was used after the effects callback settled: its commit is over (await every query before the callback returns).',
        ),
      );
    }
    let call: Statement;
    try {
      call = statementOf(config, values, rest);
    } catch (error) {
      return Promise.reject(error);
    }
    const text = call.text;
    const list = statements(text);
    const control = controlIn(list);
    if (control !== undefined) {
      return Promise.reject(
        effectsClientError(
          `The effects client refuses ${control}: velo-stream commits or rolls back the commit's transaction itself (savepoints are allowed).`,
        ),
      );
    }
    // (What is sent is what was read and checked: a plain object, each field read once.)
    // (Marked the user's: no callTimeout bounds it, gate.ts.)
    const send = (sent: string) =>
      client.query(Object.assign(bare(sent), call, { text: sent, [USER_STATEMENT]: true as const }) as never);
    if (list.length === 0 || !simpleProtocol(call)) return send(text);
    // (After a line break: a `--` comment at the text's end ends there.)
    return send(`${text}\n;${MARK_CHECK}`).then(
      (result) => {
        // Its own statements' results, as node-postgres gives them: one alone, several as a list.
        const own = (Array.isArray(result) ? result : [result]).slice(0, -1) as PgResult[];
        return own.length === 1 ? own[0] : (own as unknown as PgResult);
      },
      (error: unknown) => {
        if (!markCheckFailed(error)) throw error;
        ended = Object.assign(effectsClientError(ENDED_IN_TEXT), { cause: error });
        throw ended;
      },
    );
  };
  return {
    client: { query },
    settle: () => {
      settled = true;
    },
    ended: () => ended,
  };
}
