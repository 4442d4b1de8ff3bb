// An owner's commit on Postgres, in its fenced transaction (pg-log.ts): what commit.lua does on Redis, in its order.
// Outputs not written before (by each session's high-water mark), checkpoints, acks, ended sessions forgotten, kept
// states, openings; a retry of the last commit by its serial changes nothing. The partition's group row is locked
// with the fence (FOR UPDATE, pg-log.ts): commits of a partition apply one at a time, and output ids (`<ms>-<seq>`,
// after the row's last one) are given in commit order.
import { createHash } from 'node:crypto';
import { endValue, keptValue, lastPlaces, parseEnd, snapshotValue } from '../../durable/common/stored';
import type { Commit, CommitResult, Divergence, Lease } from '../../durable/common/transport';
import { keepOpenings } from './openings';
import { journalStatements } from './journal';
import { runEffects } from './effects-client';
import { type PgClientLike, bytes, idKey, idOf, idParts, millis, run, str, text } from './sql';

function digest(field: string, data: Buffer | string): string {
  return createHash('sha1').update(field).update(data).digest('hex');
}

/** The ms of a sid's first entry (`<key>@<ms>-<seq>`), by which a trim drops its end; 0 if it has none. */
function sidMs(sid: string): string {
  const match = /@(\d{1,20})-\d+$/.exec(sid);
  return match === null ? '0' : idParts(match[1])[0];
}

/** The last of each key's items (a batch upsert may touch a row once). */
function lastBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  return [...new Map(items.map((item) => [key(item), item])).values()];
}

/** An output a commit writes (not written before), as the commit's effects get it. */
export interface WrittenOutput {
  /** The partition whose commit writes it. */
  readonly partition: number;
  /** Its entry id in the partition's output stream. */
  readonly id: string;
  readonly sid: string;
  readonly seq: number;
  readonly key: string;
  /** `'v'`: `data` is the encoded output; `'e'`: the handler's failure as JSON. */
  readonly field: 'v' | 'e';
  readonly data: Buffer;
  readonly traceparent: string | null;
}

/**
 * Run in a commit's transaction, after its outputs are written and before it commits, with the outputs it wrote
 * (none is ever given twice: an output written before, by `(sid, seq)`, is not written again), once per transaction
 * whatever the partitions it commits, each partition's outputs in their order. A throw rolls the whole commit back
 * (outputs, acks, checkpoints): the engine reports it and retries the commit.
 */
export type CommitEffects = (client: PgClientLike, written: readonly WrittenOutput[]) => Promise<void>;

interface Written {
  readonly id: string;
  readonly field: string;
  readonly data: Buffer;
}

export async function applyCommit(
  client: PgClientLike,
  S: string,
  fn: string,
  lease: Lease,
  commit: Commit,
  now: bigint,
  group: Record<string, unknown>,
  effects?: CommitEffects,
  known?: ReadonlyMap<string, number>,
): Promise<CommitResult> {
  const p = lease.partition;
  const serial = commit.serial === undefined ? '' : str(commit.serial);
  const withIds = serial !== '' && commit.ids !== false;
  const check = commit.check === true;
  if (serial !== '' && group.lc_token === lease.token && group.lc_serial === serial) {
    if (!withIds) return { ids: [], diverged: [] };
    // The retry of a commit that was applied: the ids it wrote, found among the outputs it wrote (contiguous).
    const written = new Map<string, string>();
    if (Number(group.lc_count) > 0) {
      const { rows } = await run(
        client,
        `SELECT ms, seq, sid, oseq FROM ${S}.outputs WHERE fn = $1 AND p = $2 AND (ms, seq) >= ($3::bigint, $4::bigint)
          ORDER BY ms, seq LIMIT $5`,
        [fn, p, group.lc_first_ms, group.lc_first_seq, group.lc_count],
      );
      for (const r of rows) written.set(`${str(r.sid)} ${str(r.oseq)}`, idOf(r.ms, r.seq));
    }
    return { ids: commit.outputs.map((o) => written.get(`${o.sid} ${o.seq}`) ?? null), diverged: [] };
  }

  // High-water marks of the sessions of the outputs and of the ended ones (`known`: read with the fence, after the
  // group row's lock).
  const sids = [...new Set([...commit.outputs.map((o) => o.sid), ...commit.ended])];
  const marks = new Map<string, number>(known ?? []);
  if (known === undefined && sids.length > 0) {
    const { rows } = await run(client, `SELECT sid, seq FROM ${S}.marks WHERE fn = $1 AND p = $2 AND sid = ANY($3::text[])`, [
      fn,
      p,
      sids,
    ]);
    for (const r of rows) marks.set(str(r.sid), Number(r.seq));
  }

  // Outputs: each above its session's mark is written (its id the next of the output stream's), the others skipped.
  let outMs = BigInt(str(group.out_ms));
  let outSeq = BigInt(str(group.out_seq));
  const ids: (string | null)[] = [];
  const rows: {
    ms: string;
    seq: string;
    sid: string;
    oseq: number;
    key: string;
    field: string;
    data: Buffer;
    tp: string | null;
  }[] = [];
  const raised = new Map<string, number>();
  const places = lastPlaces(commit.outputs);
  const checks = new Map<string, { sid: string; seq: number; id: string; digest: string }>();
  const writtenHere = new Map<string, Written>();
  const skipped: number[] = [];
  commit.outputs.forEach((o, index) => {
    const field = o.error !== undefined ? 'e' : 'v';
    const data = bytes(o.error ?? o.payload ?? '');
    const mark = marks.get(o.sid) ?? 0;
    if (o.seq > mark) {
      if (now > outMs) [outMs, outSeq] = [now, 0n];
      else outSeq += 1n;
      const id = `${outMs}-${outSeq}`;
      rows.push({
        ms: str(outMs),
        seq: str(outSeq),
        sid: text('A session id', o.sid),
        oseq: o.seq,
        key: o.key,
        field,
        data,
        tp: o.traceparent ?? null,
      });
      marks.set(o.sid, o.seq);
      raised.set(o.sid, o.seq);
      writtenHere.set(id, { id, field, data });
      if (check) checks.set(`${o.seq} ${o.sid}`, { sid: o.sid, seq: o.seq, id, digest: digest(field, data) });
      if (withIds) ids.push(id);
      return;
    }
    if (withIds) ids.push(null);
    if (check) skipped.push(index);
  });

  // checkReplay: each skipped output against the digest of the one written before (this commit's, or stored).
  const diverged: Divergence[] = [];
  if (skipped.length > 0) {
    const earlier = new Map<string, { id: string; digest: string }>();
    const { rows: found } = await run(
      client,
      `SELECT c.sid, c.seq, c.out_id, c.digest FROM ${S}.checks c
         JOIN unnest($3::text[], $4::bigint[]) AS w(sid, seq) ON c.sid = w.sid AND c.seq = w.seq
        WHERE c.fn = $1 AND c.p = $2`,
      [fn, p, skipped.map((i) => commit.outputs[i].sid), skipped.map((i) => commit.outputs[i].seq)],
    );
    for (const r of found) earlier.set(`${str(r.seq)} ${str(r.sid)}`, { id: str(r.out_id), digest: str(r.digest) });
    for (const index of skipped) {
      const o = commit.outputs[index];
      const key = `${o.seq} ${o.sid}`;
      // (Written by this commit at a lower index: its check is this commit's, newer than a stored one.)
      const stored = checks.get(key) ?? earlier.get(key);
      const field = o.error !== undefined ? 'e' : 'v';
      if (stored === undefined || stored.digest === digest(field, bytes(o.error ?? o.payload ?? ''))) continue;
      let entry = writtenHere.get(stored.id);
      if (entry === undefined) {
        const [ms, seq] = idParts(stored.id);
        const { rows: got } = await run(
          client,
          `SELECT field, data FROM ${S}.outputs WHERE fn = $1 AND p = $2 AND ms = $3 AND seq = $4`,
          [fn, p, ms, seq],
        );
        if (got.length > 0) entry = { id: stored.id, field: str(got[0].field), data: got[0].data as Buffer };
      }
      const committed =
        entry === undefined
          ? undefined
          : entry.field === 'v'
            ? { id: stored.id, payload: entry.data }
            : { id: stored.id, error: entry.data.toString() };
      diverged.push({ kind: 'output', index, committed });
    }
  }

  // Every write of the commit but the ended sessions' and the openings, in one statement (one round trip): outputs,
  // marks, checks, checkpoints, acks, kept states, and the group row (the output stream's last id; with a serial,
  // this commit, for its retry). Each part only if it has rows; they touch different tables.
  const parts: string[] = [];
  const values: unknown[] = [fn, p];
  const param = (value: unknown) => `$${values.push(value)}`;
  if (rows.length > 0) {
    parts.push(`INSERT INTO ${S}.outputs (fn, p, ms, seq, sid, oseq, key, field, data, tp)
       SELECT $1, $2, u.ms, u.seq, u.sid, u.oseq, u.key, u.field, u.data, u.tp
         FROM unnest(${param(rows.map((r) => r.ms))}::bigint[], ${param(rows.map((r) => r.seq))}::bigint[],
                     ${param(rows.map((r) => r.sid))}::text[], ${param(rows.map((r) => r.oseq))}::bigint[],
                     ${param(rows.map((r) => text('A key', r.key)))}::text[], ${param(rows.map((r) => r.field))}::"char"[],
                     ${param(rows.map((r) => r.data))}::bytea[], ${param(rows.map((r) => r.tp))}::text[])
              AS u(ms, seq, sid, oseq, key, field, data, tp)`);
    parts.push(`INSERT INTO ${S}.marks (fn, p, sid, seq, place)
       SELECT $1, $2, u.sid, u.seq, u.place
         FROM unnest(${param([...raised.keys()])}::text[], ${param([...raised.values()])}::bigint[],
                     ${param([...raised].map(([sid, seq]) => placeOf(places, sid, seq)))}::text[]) AS u(sid, seq, place)
         ON CONFLICT (fn, p, sid) DO UPDATE SET seq = EXCLUDED.seq, place = EXCLUDED.place`);
    if (checks.size > 0) {
      const list = [...checks.values()];
      parts.push(`INSERT INTO ${S}.checks (fn, p, sid, seq, out_id, digest)
         SELECT $1, $2, u.sid, u.seq, u.id, u.digest
           FROM unnest(${param(list.map((c) => c.sid))}::text[], ${param(list.map((c) => c.seq))}::bigint[],
                       ${param(list.map((c) => c.id))}::text[], ${param(list.map((c) => c.digest))}::text[]) AS u(sid, seq, id, digest)
           ON CONFLICT (fn, p, sid, seq) DO UPDATE SET out_id = EXCLUDED.out_id, digest = EXCLUDED.digest`);
    }
  }
  const checkpoints = lastBy(commit.checkpoints ?? [], (c) => c.sid);
  if (checkpoints.length > 0) {
    parts.push(`INSERT INTO ${S}.checkpoints (fn, p, sid, value)
       SELECT $1, $2, u.sid, u.value
         FROM unnest(${param(checkpoints.map((c) => text('A session id', c.sid)))}::text[],
                     ${param(checkpoints.map((c) => bytes(snapshotValue(c))))}::bytea[]) AS u(sid, value)
         ON CONFLICT (fn, p, sid) DO UPDATE SET value = EXCLUDED.value`);
  }
  if (commit.acks.length > 0) {
    parts.push(
      `DELETE FROM ${S}.pending WHERE fn = $1 AND p = $2 AND k = ANY(${param(commit.acks.map((id) => idKey(idParts(id))))}::numeric[])`,
    );
  }
  const kept = lastBy(commit.kept ?? [], (k) => k.key);
  if (kept.length > 0) {
    const until = str(now + millis('A retention', commit.retention ?? 1, 1));
    parts.push(`INSERT INTO ${S}.kept (fn, p, key, value, until_ms)
       SELECT $1, $2, u.key, u.value, ${param(until)}::bigint
         FROM unnest(${param(kept.map((k) => text('A key', k.key)))}::text[], ${param(kept.map((k) => bytes(keptValue(k))))}::bytea[]) AS u(key, value)
         ON CONFLICT (fn, p, key) DO UPDATE SET value = EXCLUDED.value, until_ms = EXCLUDED.until_ms`);
  }
  if (serial !== '') {
    const first = rows[0];
    parts.push(`UPDATE ${S}.groups SET out_ms = ${param(str(outMs))}::bigint, out_seq = ${param(str(outSeq))}::bigint,
         lc_token = ${param(lease.token)}::text, lc_serial = ${param(serial)}::text, lc_first_ms = ${param(first?.ms ?? null)}::bigint,
         lc_first_seq = ${param(first?.seq ?? null)}::bigint, lc_count = ${param(rows.length)}::integer
       WHERE fn = $1 AND p = $2`);
  } else if (rows.length > 0) {
    parts.push(`UPDATE ${S}.groups SET out_ms = ${param(str(outMs))}::bigint, out_seq = ${param(str(outSeq))}::bigint
       WHERE fn = $1 AND p = $2`);
  }
  if (parts.length > 0) {
    // (The last part is the statement, the others data-modifying WITH queries of it: Postgres runs them all.)
    const last = parts.pop() as string;
    await run(client, parts.length === 0 ? last : `WITH ${parts.map((q, i) => `w${i} AS (${q})`).join(', ')} ${last}`, values);
  }
  // The journal after the checkpoints (in the same transaction: its order among these writes is not seen).
  await journalStatements(client, S, fn, p, commit);

  if (effects !== undefined && rows.length > 0) {
    // (Guarded: no transaction control, no call once the callback settled; see effects-client.ts.)
    await runEffects(
      client,
      effects,
      rows.map((r) => ({
        partition: p,
        id: `${r.ms}-${r.seq}`,
        sid: r.sid,
        seq: r.oseq,
        key: r.key,
        field: r.field === 'e' ? 'e' : 'v',
        data: r.data,
        traceparent: r.tp,
      })),
    );
  }

  if (commit.ended.length > 0) await forgetEnded(client, S, fn, p, commit, check, marks, diverged);
  await keepOpenings(client, S, fn, p, commit.opened ?? []);
  return { ids: withIds ? ids : [], diverged };
}

/**
 * Ended sessions: with `check`, each end kept (the first) or compared with the one kept, and the count of outputs
 * compared with the mark; then their digests, openings (and counts), marks, checkpoints and timers go.
 */
async function forgetEnded(
  client: PgClientLike,
  S: string,
  fn: string,
  p: number,
  commit: Commit,
  check: boolean,
  marks: ReadonlyMap<string, number>,
  diverged: Divergence[],
): Promise<void> {
  const ended = commit.ended;
  let checked = check;
  if (!checked) {
    const { rows } = await run(client, `SELECT EXISTS (SELECT 1 FROM ${S}.checks WHERE fn = $1 AND p = $2) AS any`, [fn, p]);
    checked = rows[0].any === true;
  }
  if (check) {
    const { rows } = await run(client, `SELECT sid, value FROM ${S}.ends WHERE fn = $1 AND p = $2 AND sid = ANY($3::text[])`, [
      fn,
      p,
      [...ended],
    ]);
    const stored = new Map(rows.map((r) => [str(r.sid), str(r.value)]));
    const added = new Map<string, string>();
    ended.forEach((sid, i) => {
      const end = commit.endedAt?.[i];
      if (end !== undefined) {
        const value = endValue(end);
        const was = stored.get(sid);
        if (was === undefined) {
          stored.set(sid, value);
          added.set(sid, value);
        } else if (was !== value) diverged.push({ kind: 'boundary', index: i, committed: parseEnd(was) });
      }
      const hw = marks.get(sid) ?? 0;
      const last = commit.endedSeqs?.[i] ?? 0;
      if (hw > last) diverged.push({ kind: 'count', sid, committed: hw, replayed: last });
    });
    if (added.size > 0) {
      await run(
        client,
        `INSERT INTO ${S}.ends (fn, p, sid, value, ms) SELECT $1, $2, u.sid, u.value, u.ms
           FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(sid, value, ms)`,
        [fn, p, [...added.keys()], [...added.values()].map((v) => text('An end', v)), [...added.keys()].map(sidMs)],
      );
    }
  }
  const sids = [...new Set(ended)];
  if (checked) await run(client, `DELETE FROM ${S}.checks WHERE fn = $1 AND p = $2 AND sid = ANY($3::text[])`, [fn, p, sids]);
  const { rows: openings } = await run(
    client,
    `DELETE FROM ${S}.openings WHERE fn = $1 AND p = $2 AND sid = ANY($3::text[]) RETURNING version`,
    [fn, p, sids],
  );
  const drop = new Map<string, number>();
  for (const r of openings) drop.set(str(r.version), (drop.get(str(r.version)) ?? 0) + 1);
  for (const [version, n] of drop) {
    await run(client, `UPDATE ${S}.versions SET count = count - $4 WHERE fn = $1 AND p = $2 AND version = $3`, [
      fn,
      p,
      version,
      n,
    ]);
  }
  if (drop.size > 0) await run(client, `DELETE FROM ${S}.versions WHERE fn = $1 AND p = $2 AND count <= 0`, [fn, p]);
  for (const table of ['marks', 'checkpoints', 'timers']) {
    await run(client, `DELETE FROM ${S}.${table} WHERE fn = $1 AND p = $2 AND sid = ANY($3::text[])`, [fn, p, sids]);
  }
}

/** The place stored beside session `sid`'s mark `seq`: its last output's in the commit, if it is that output's. */
function placeOf(places: ReadonlyMap<string, string>, sid: string, seq: number): string | null {
  const place = places.get(sid);
  return place !== undefined && place.startsWith(`${seq} `) ? place : null;
}
