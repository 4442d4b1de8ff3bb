// The client a commit's `effects` get: the commit's own connection, in its transaction, behind a thin guard. A
// transaction-control statement would end velo-stream's transaction under it (the rest of the commit would run in
// autocommit, and a failure after it would lose outputs), and a call after the callback settled would run inside
// whatever transaction the connection runs next: both are refused (ERR_VELO_EFFECTS_CLIENT). Savepoints are safe
// (SAVEPOINT, RELEASE, ROLLBACK TO) and allowed.
import { effectsClientError } from '../../errors';
import type { PgClientLike, PgResult } from './sql';

/** Leading whitespace and comments (`-- ...` lines, `/* ... *\/` blocks, not nested). */
const LEADING = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/;
/** A transaction-control statement's start (ROLLBACK TO, a savepoint's, is not one). */
const CONTROL =
  /^(?:begin|start\s+transaction|commit|end|abort|prepare\s+transaction|rollback(?!\s+(?:work\s+|transaction\s+)?to\b))\b/i;

/** The transaction-control statement `text` starts with (or holds after a `;`), or undefined. */
export function controlStatement(text: string): string | undefined {
  for (const part of text.split(';')) {
    const rest = part.replace(LEADING, '');
    const m = CONTROL.exec(rest);
    if (m !== null) return m[0].toUpperCase();
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
    const control = typeof text === 'string' ? controlStatement(text) : undefined;
    if (control !== undefined) {
      return Promise.reject(
        effectsClientError(
          `The effects client refuses ${control}: velo-stream commits or rolls back the commit's transaction itself (savepoints are allowed).`,
        ),
      );
    }
    return typeof config === 'string' ? client.query(config, values) : client.query(config);
  };
  return {
    client: { query },
    settle: () => {
      settled = true;
    },
  };
}
