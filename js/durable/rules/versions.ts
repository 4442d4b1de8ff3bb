// Versions of a distributed stream function's handler, as pure rules of what the workers advertise (no I/O, no
// run-time import): which worker supersedes which, how many take partitions, and what a worker's balance does with
// its share. Where a session's version is kept and read is the log's job (`SessionOpening`); which version a session
// runs on is `engine/opening.ts`.
/** What a worker says it runs: the version new sessions open on (`''`: none set), and every version it can run. */
export interface WorkerAdvert {
  readonly version: string;
  readonly runs: readonly string[];
}

/** The advert of a worker that says nothing (of a release before versions): it runs no version. */
export const NO_VERSION: WorkerAdvert = { version: '', runs: [''] };

/** Each advert's versions (`runs`), made once: balances and status pages compare every pair of adverts. */
const runSets = new WeakMap<WorkerAdvert, ReadonlySet<string>>();

/** The versions a worker runs, with `''` (sessions that opened with no version run on any worker). */
function runs(a: WorkerAdvert): ReadonlySet<string> {
  let set = runSets.get(a);
  if (set === undefined) runSets.set(a, (set = new Set(['', ...a.runs])));
  return set;
}

/**
 * `a` supersedes `b`: `a` runs every version `b` runs, and more (a worker that migrates runs them all). A superseded worker takes no partition and hands
 * over those it has (its sessions go on, on their versions, at a worker that runs them all), so that new sessions
 * open on the newer version as soon as a worker of it is live. Workers that run the same versions, or versions
 * neither has all of, both go on.
 */
export function supersedes(a: WorkerAdvert, b: WorkerAdvert): boolean {
  // A worker that migrates (`'*'`) runs any session: it supersedes every worker that does not. Of two that migrate,
  // the one that also runs every version the other runs, and more, supersedes it (a release that keeps the last
  // one's handler), as for workers that do not.
  const any = (w: WorkerAdvert): boolean => w.runs.includes('*');
  if (any(a) !== any(b)) return any(a);
  const ra = runs(a);
  const rb = runs(b);
  if (ra.size <= rb.size) return false;
  for (const v of rb) if (!ra.has(v)) return false;
  return true;
}

/**
 * Of the live workers (`live` of them; `adverts` of those that say what they run: a worker of an older release
 * says nothing, and is taken to run no version), how many take partitions (none supersedes them), and whether
 * `me` is superseded.
 */
export function activeWorkers(
  adverts: ReadonlyMap<string, WorkerAdvert>,
  live: number,
  me: string,
): { readonly active: number; readonly superseded: boolean; readonly others: readonly WorkerAdvert[] } {
  const all = [...adverts.values()];
  const isSuperseded = (a: WorkerAdvert): boolean => all.some((b) => supersedes(b, a));
  let active = Math.max(0, live - adverts.size);
  // A worker with no advert runs no version: superseded by any worker with one.
  if (active > 0 && all.some((b) => supersedes(b, NO_VERSION))) active = 0;
  let superseded = false;
  const others: WorkerAdvert[] = [];
  for (const [id, a] of adverts) {
    if (!isSuperseded(a)) {
      active++;
      if (id !== me) others.push(a);
    } else if (id === me) superseded = true;
  }
  return { active, superseded, others };
}

/** Whether a worker that advertises `a` runs every one of `versions` (`''`: any worker does). */
export function runsAll(a: WorkerAdvert, versions: Iterable<string>): boolean {
  if (a.runs.includes('*')) return true;
  for (const v of versions) if (v !== '' && !a.runs.includes(v)) return false;
  return true;
}

/**
 * Whether the active workers (`others`, and `mine`) run different sets of versions: then partitions may be refused to
 * some. Superseded workers take no part (they take nothing and hand everything over).
 */
export function mixedVersions(mine: WorkerAdvert, others: readonly WorkerAdvert[]): boolean {
  const key = (a: WorkerAdvert): string => [...a.runs].sort().join(' ');
  return others.some((a) => key(a) !== key(mine));
}

/** What a worker's balance sees: the live workers and their adverts, itself, and the partitions it holds. */
export interface BalanceView {
  readonly adverts: ReadonlyMap<string, WorkerAdvert>;
  /** Live workers (those with an advert and those without). */
  readonly live: number;
  readonly me: string;
  readonly mine: WorkerAdvert;
  readonly partitions: number;
  /** The partitions it holds, in the order it took them, with the versions of their live sessions. */
  readonly held: readonly { readonly partition: number; readonly versions: ReadonlySet<string> }[];
}

/** What a worker's balance does: its share, whether it is superseded, what it hands back, and whether it rescues. */
export interface BalancePlan {
  readonly superseded: boolean;
  /** Partitions it may hold (0 when superseded). */
  readonly share: number;
  /** It hands `handBack` back this round, and takes nothing. */
  readonly over: boolean;
  /**
   * The partitions it hands back: past its share, and, while workers run different versions, only those a worker of
   * another release runs (one that none can run stays, and none goes back and forth within one release).
   */
  readonly handBack: readonly number[];
  /**
   * It takes, past its share, partitions refused to others for their sessions' versions (while workers run
   * different versions, it is not superseded, and it hands nothing back): also when it holds more than its share
   * already, of partitions no other release can run.
   */
  readonly rescue: boolean;
}

/** The balance's decision, from what it sees. */
export function planBalance(v: BalanceView): BalancePlan {
  const { active, superseded, others } = activeWorkers(v.adverts, v.live, v.me);
  const share = superseded ? 0 : Math.ceil(v.partitions / Math.max(1, active));
  const mixed = mixedVersions(v.mine, others);
  let handBack: number[] = [];
  if (v.held.length > share) {
    const mine = v.mine.runs.join(' ');
    const movable = mixed
      ? (h: BalanceView['held'][number]) => others.some((a) => a.runs.join(' ') !== mine && runsAll(a, h.versions))
      : () => true;
    handBack = v.held
      .filter(movable)
      .slice(0, v.held.length - share)
      .map((h) => h.partition);
  }
  const over = handBack.length > 0;
  return { superseded, share, over, handBack, rescue: !superseded && mixed && !over };
}

/** A live worker, as it advertises itself. */
export interface VersionedWorker {
  /** Its `workerId`. */
  readonly id: string;
  /** Its `version` (`''`: none set, or a worker of a release before versions). */
  readonly version: string;
  /** Every version it runs: its own, then its `versions`. */
  readonly runs: readonly string[];
  /** Partitions it owns now, ascending. */
  readonly partitions: readonly number[];
  /** A live worker of a newer version supersedes it: it takes no partition, and hands over those it has. */
  readonly superseded: boolean;
}

/** The versions of a function's live sessions and workers, as `status()` reads them. */
export interface VersionStatus {
  /**
   * Live sessions per version, over all partitions (`''`: sessions opened with no version). A session counts once
   * it wrote anything (an output, a checkpoint, a timer's wake-up), until its end is committed; one that has
   * written nothing yet runs on its owner's version and is not counted (nothing of it is visible, and its owner's
   * partitions are in `workers`).
   */
  readonly sessions: Readonly<Record<string, number>>;
  /** The live workers, by id. */
  readonly workers: readonly VersionedWorker[];
  /** Partitions no live worker owns now (between owners, or refused to every live worker for its sessions' versions). */
  readonly unowned: readonly number[];
}

/** One partition as `status()` reads it: its live sessions per version (`:versions`), and its lease's holder (null: none). */
export interface PartitionVersions {
  readonly counts: Iterable<readonly [string, number]>;
  readonly holder: string | null;
}

/**
 * The status of a function's versions from what its workers keep: each partition's counts and lease holder, the
 * live workers (registered) and their adverts (a live worker without one runs no version).
 */
export function versionStatus(
  parts: readonly PartitionVersions[],
  live: ReadonlySet<string>,
  adverts: ReadonlyMap<string, WorkerAdvert>,
): VersionStatus {
  const sessions = new Map<string, number>();
  const owned = new Map<string, number[]>();
  const unowned: number[] = [];
  parts.forEach(({ counts, holder }, p) => {
    for (const [version, n] of counts) sessions.set(version, (sessions.get(version) ?? 0) + n);
    if (holder === null || !live.has(holder)) unowned.push(p);
    else owned.set(holder, [...(owned.get(holder) ?? []), p]);
  });
  const workers = [...live].sort().map((id): VersionedWorker => {
    const advert = adverts.get(id) ?? NO_VERSION;
    // Superseded: as that worker judges it (`activeWorkers` over the same adverts).
    const { superseded } = activeWorkers(adverts, live.size, id);
    return { id, version: advert.version, runs: advert.runs, partitions: owned.get(id) ?? [], superseded };
  });
  return { sessions: Object.fromEntries([...sessions].filter(([, n]) => n > 0)), workers, unowned };
}

/**
 * `version` is drained in `status`: no live session runs on it, and no live worker whose version it is owns a
 * partition (it would open new sessions on it).
 */
export function drainedIn(status: VersionStatus, version: string): boolean {
  // (An own property only: a version may be named `constructor`.)
  const live = Object.hasOwn(status.sessions, version) ? status.sessions[version] : 0;
  return live === 0 && !status.workers.some((w) => w.version === version && w.partitions.length > 0);
}
