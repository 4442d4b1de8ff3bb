// A deterministic simulation of the Redis tier: the real `PartitionRun`, its sessions and the core streams, on the
// in-memory log (memory-log.ts) and a virtual clock, with worker processes that crash, pause past their lease and
// take over from each other, and a log that delays, loses and refuses calls, all drawn from one seed. Nothing
// here reads the machine's clock or sets a real timer: the run is a function of its options, so a failing seed
// replays exactly.
//
// The event loop: the clock moves only when nothing else can run. Each step lets every promise and every
// immediate of Node's settle first (the core streams wake their readers on immediates), then runs the clock's
// next immediate, or its next timer (moving the time to it). A process is a `PartitionHost` (what the worker is
// to its partitions: leases, renewals, wake-ups on new entries) with a clock of its own over the shared one: a
// crash stops its callbacks for good and cuts its connection (what it sent before stays applied, nothing after is),
// a pause holds them until it ends.
import { type Codec, encodeChecked, jsonCodec } from '../common/codec';
import type { Fault, FaultPolicy, LogCall } from '../memory/memory-log';
import { type FirstWrites, MemoryStore, type PartitionLeftovers } from '../memory/memory-store';
import { RecordingStore, unrecorded } from './recording-store';
import { fnv1a } from '../common/keys';
import { Prng } from '../common/prng';
import { type OutputItem, outputItem } from '../common/outputs';
import type { Lease } from '../common/transport';
import { VirtualClock } from './virtual-clock';
import { SimLimiter } from './sim-limiter';
import type { RunOutcome, SimDeploy, SimOpening, SimOptions, SimRelease, SimResult } from './sim-types';
import { drainedIn, versionStatus } from '../rules/versions';
import {
  type ClockSkew,
  ProcessClock,
  type ProcessRelease,
  type SimHost,
  type SimKeyState,
  type SimLimits,
  SimProcess,
  balancePeriod,
} from './sim-process';

/**
 * The bounds of one `runUntil` (a move of the clock): at most `maxSteps` steps in all, and at most
 * `maxStepsAtOnce` steps of handlers while the virtual time stays the same (a handler looping at one time: a timer
 * due at once made on every input, outputs yielded without taking input). A step is a clock step (the immediates
 * queued, or one timer: a renewal, a reply, a timer's wake-up, a tick), a commit or a wake-up applied by the log,
 * or a handler's: an input it takes (an entry or a timer) or an output it yields. Fields, so that the library's own
 * tests can reach them in a few steps.
 */
export const simBounds = { maxSteps: 2_000_000, maxStepsAtOnce: 100_000 };

/** A day, ms: how long after its last event a run may take to settle, by default. */
const DAY_MS = 86_400_000;

/**
 * The longest a crashed process's partitions wait for another to take them over, ms after the crash: its last
 * renewal may have been a balance period before it, so its lease runs out up to `leaseTtl` after the crash (the
 * store frees it 1 ms past its end), and the next process notices at its next balance, up to a period later.
 */
export function takeoverWithin(leaseTtl: number): number {
  return leaseTtl + balancePeriod(leaseTtl);
}

/**
 * A quiet span (nothing to do but renew leases) longer than this many lease periods is postponed over
 * (`Simulation.#jump`): its renewals would cost a step each, for nothing a session sees.
 */
const JUMP_LEASES = 100;

/** Resolves once Node has nothing left to run now: promise jobs, and immediates (each one's promise jobs after it). */
async function quiesce(): Promise<void> {
  // Immediates set by the core streams chain at most a few deep: getActiveResourcesInfo counts those pending
  // (a runtime without it gets a fixed number of turns, enough for those chains).
  const pending =
    typeof process.getActiveResourcesInfo === 'function'
      ? () => process.getActiveResourcesInfo().includes('Immediate')
      : (turn: number) => turn < 4;
  for (let turn = 0; turn < 100; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (!pending(turn)) return;
  }
}

/**
 * One run: the shared clock and store, the processes, the producer's appends, and what was seen. Two processes
 * start at once (one takes the partitions, the other waits to take over); a crashed one is replaced.
 */
export class Simulation<I, O> implements SimHost<I, O> {
  readonly clock: VirtualClock;
  readonly store: MemoryStore;
  readonly limits: SimLimits;
  readonly codec: Codec<unknown>;
  readonly errors: unknown[] = [];
  /** Each session's opening as it stands (`SimResult.sessions`). */
  readonly sessions = new Map<string, SimOpening>();
  /**
   * Each process's openings decided anew, by sid: the one whose write first stores the session's opening (every later
   * owner follows it), or, with none stored (no versions), whose commit writes its first outputs, stands.
   */
  readonly #decided = new Map<string, Map<string, SimOpening>>();
  /** Sessions whose opening or first outputs are written: their opening stands (readers keep the outputs written first). */
  readonly #standing = new Set<string>();

  /**
   * Process `process` (of release `release`) opened session `sid` on `version`, `fresh`: decided anew, else followed.
   * Until the session's opening or first outputs are written, the latest decision is taken; then the one of the
   * process that wrote them (a stale owner's decision, whose writes are fenced, never stands).
   */
  opened(process: string, sid: string, version: string, release: number, fresh: boolean, keyState: SimKeyState | null): void {
    const opening = { version, release, keyState };
    let decided = this.#decided.get(process);
    if (decided === undefined) this.#decided.set(process, (decided = new Map<string, SimOpening>()));
    if (fresh) decided.set(sid, opening);
    else decided.delete(sid);
    if ((fresh && !this.#standing.has(sid)) || !this.sessions.has(sid)) this.sessions.set(sid, opening);
  }

  /** A write by `written.worker` stored the openings or first outputs of sessions: the openings it decided stand. */
  #firstWrites(written: FirstWrites): void {
    for (const sid of [...written.openings, ...written.outputs]) {
      if (this.#standing.has(sid)) continue;
      this.#standing.add(sid);
      const opening = this.#decided.get(written.worker)?.get(sid);
      if (opening !== undefined) this.sessions.set(sid, opening);
    }
  }
  readonly violations: string[] = [];
  readonly processes: SimProcess<I, O>[] = [];
  readonly random: Prng;
  /** Draws of the processes' clock skews (`#skew`): a stream of their own. */
  readonly #skewDraws: Prng;
  /** The draws of late applies (`SimFaults.late`): a stream of their own, so a seed's other faults stay as without them. */
  readonly #lateDraws: Prng;
  /** The draws of stalled calls (`SimFaults.cut`): a stream of their own, as `#lateDraws`. */
  readonly #cutDraws: Prng;
  /** The limiters of `options.permits` (null: none), shared by every process. */
  readonly limiters: { session: SimLimiter | null; step: SimLimiter | null };
  readonly start: number;
  readonly stats = { steps: 0, time: 0, crashes: 0, pauses: 0, takeovers: 0, jumps: 0 };
  /** The releases (`SimOptions.releases`, and those added since: `addRelease`), or undefined: none. */
  readonly releases: SimRelease[] | undefined;
  /** The release deployed last (with releases). */
  deployed = 0;
  /** Virtual ms moved over at once (`#jump`). */
  #skipped = 0;
  /** Releases stopped by a deploy's `stopOld`. */
  readonly #stopped = new Set<number>();
  readonly maxWaiting: number;
  /**
   * The bound the run is under (set by `runUntil`): the step count it may not reach, and the handlers' steps at one
   * virtual time (the time, and how many so far).
   */
  #bound = { last: Infinity, time: NaN, handlers: 0 };
  /** Which bound stopped the last `runUntil` that ran out of steps: all of its steps, or those at one time. */
  exhausted: 'steps' | 'at once' | null = null;
  /** Commits applied so far (any process): `crashAfterCommits` counts them. */
  commits = 0;
  /** Wake-ups written so far (any process): `crashAfterWakes` counts them. */
  wakes = 0;
  #spawned = 0;
  #owners = 0;
  /** Crashes of `crashAt` made. */
  #crashedAt = 0;
  #crashedAfter = 0;
  #crashedAfterWake = 0;

  constructor(readonly options: SimOptions<I, O>) {
    this.start = options.start ?? 1_000_000;
    this.random = new Prng(options.seed);
    this.#skewDraws = new Prng((options.seed ^ 0x736b6577) >>> 0);
    this.#lateDraws = new Prng((options.seed ^ 0x6c617465) >>> 0);
    this.#cutDraws = new Prng((options.seed ^ 0x63757400) >>> 0);
    this.clock = new VirtualClock(this.start);
    const permits = options.permits;
    // Their draws come from a stream of their own: the faults are drawn as in the same run without them.
    const draws = new Prng((options.seed ^ 0x5eed1) >>> 0);
    const limiter = (name: string, concurrency: number | undefined) =>
      concurrency === undefined
        ? null
        : new SimLimiter(name, concurrency, draws, this.clock, options.limits?.leaseTtl ?? 3000, permits?.fail ?? 0);
    this.limiters = { session: limiter('sessions', permits?.session), step: limiter('steps', permits?.step) };
    this.limits = options.limits ?? {};
    this.codec = options.codec ?? jsonCodec;
    const onWrite = (kind: 'commit' | 'wake', written: FirstWrites) => {
      this.#firstWrites(written);
      if (kind === 'commit') this.commits++;
      else this.wakes++;
      this.progress(null);
    };
    // (`record`: a store that records each operation applied to it, for a replay on another log.)
    const Store = options.record === true ? RecordingStore : MemoryStore;
    this.store = new Store(this.limits.partitions ?? 1, this.clock, onWrite);
    this.maxWaiting = options.permits?.maxWaiting ?? 1000;
    this.releases = options.releases === undefined ? undefined : [...options.releases];
    this.spawn();
    this.spawn();
    for (const d of options.deploys ?? []) this.clock.setTimeout(() => this.deploy(d), Math.max(0, d.at - this.start));
  }

  reported(error: unknown): void {
    this.errors.push(error);
    this.options.reported?.(error);
  }

  note(line: string): void {
    this.options.trace?.(`t=${this.clock.now()} step=${this.stats.steps} ${line}`);
  }

  took(worker: SimProcess<I, O>, lease: Lease): void {
    if (this.#owners++ > 0) this.stats.takeovers++;
    this.note(`${worker.id} takes p${lease.partition} (${lease.token})`);
  }

  /**
   * Appends an event for `key` now (to its partition, as the producer picks it, checked as it checks it); its entry
   * id. testWorker's `send()` (an encoding refused names that call, as the producers' do).
   */
  append(key: string, event: I): string {
    const partition = fnv1a(key) % this.store.partitions;
    const data = encodeChecked(
      this.codec,
      event,
      this.limits.maxEventBytes ?? 1 << 20,
      `event of send() for key ${JSON.stringify(key)}`,
    );
    return this.store.append(partition, [[key, data]])[0];
  }

  /**
   * A new process's clock against the log's (`SimFaults.clockSkew`, `clockDrift`), or null: none. Drawn from a stream
   * of the seed's own, so that the run's other draws stay as without it.
   */
  #skew(id: string): ClockSkew | null {
    const { clockSkew = 0, clockDrift = 0 } = this.options.faults ?? {};
    if (clockSkew === 0 && clockDrift === 0) return null;
    const draws = this.#skewDraws;
    const skew = { offset: draws.int(-clockSkew, clockSkew), drift: draws.int(-clockDrift, clockDrift), since: this.clock.now() };
    this.note(`${id}'s clock: ${skew.offset} ms ahead of the log's, ${skew.drift} ms more each second`);
    return skew;
  }

  /** Release `index` as a process runs it: its functions made for the process, its `migrate`. */
  #release(index: number, delay: (ms?: number) => Promise<void>, adopter: () => SimProcess<I, O>): ProcessRelease<I, O> {
    const now = () => this.clock.now();
    const releases = this.releases;
    if (releases === undefined)
      return { index: 0, version: '', versioned: false, fn: this.options.fn(delay, now, ''), older: new Map(), migrate: null };
    const r = releases[index];
    const migrate = this.options.migrate;
    return {
      index,
      version: r.version,
      versioned: true,
      fn: this.options.fn(delay, now, r.version),
      older: new Map((r.carries ?? []).map((v) => [v, this.options.fn(delay, now, v)])),
      migrate:
        r.migrate === true && migrate !== undefined
          ? (state, from) => {
              this.#adopting(index, from, adopter);
              adopter().clock.spend(this.options.migrateMs ?? 0);
              return migrate(state, from, r.version);
            }
          : null,
      ...(r.debounce === undefined ? {} : { debounce: r.debounce }),
    };
  }

  /**
   * A process of release `to` adopts a session of version `from`: of a newer release (later in `releases`), that is
   * the revival the docs describe (a superseded worker takes partitions again once every worker that superseded it
   * is gone); while a process of that newer release is up and serving, and has served since before the adopter took
   * its partitions, it is two releases migrating each other's sessions back and forth, which superseding must
   * prevent. (One that came back since, from a pause past its leases or a heartbeat stalled past its registration,
   * is the adopter's to see at its next balance.)
   */
  #adopting(to: number, from: string, adopter: () => SimProcess<I, O>): void {
    const releases = this.releases ?? [];
    const newer = releases.findIndex((r) => r.version === from);
    if (newer <= to) return;
    // A stale owner (its leases gone without its knowing: paused past them) adopts what its successor wrote: its
    // writes are fenced, and nothing of it reaches a reader.
    const process = adopter();
    const held = [...process.runs.values()].filter((run) => this.store.holder(run.partition) === run.lease.token);
    if (held.length === 0) return;
    const took = Math.max(...held.map((run) => process.takenAt.get(run.partition) ?? 0));
    // (One whose registration ran out, as a stalled heartbeat lets it, is gone to the others: the revival is theirs.)
    const serving = this.processes.find(
      (p) =>
        !p.dead &&
        !p.closing &&
        !p.clock.paused &&
        this.store.registered(p.id) &&
        p.release >= newer &&
        p.servingSince !== null &&
        p.servingSince <= took,
    );
    if (serving !== undefined)
      this.violations.push(
        `t=${this.clock.now()}: a process of ${releases[to].version} adopts a ${from} session while ${serving.id} (${releases[serving.release].version}) serves`,
      );
  }

  /** A new process of release `release` (default the one deployed last), with a fault policy drawn from the run's seed. */
  spawn(release = this.deployed): SimProcess<I, O> {
    const f = this.options.faults ?? {};
    const random = this.random;
    const late = this.#lateDraws;
    const cut = this.#cutDraws;
    const id = `w${++this.#spawned}`;
    const faults: FaultPolicy = (call: LogCall) => {
      // A stalled connection can hold any call, leases' and registrations' too, until the caller's bound cuts it.
      if ((f.cut ?? 0) > 0 && cut.chance(f.cut ?? 0)) {
        const ms = f.callTimeout ?? 1000;
        const draw = cut.next();
        const applyAt = draw < 1 / 3 ? null : draw < 2 / 3 ? 0 : cut.int(1, Math.max(1, ms === Infinity ? 1000 : ms));
        this.note(`${id} ${call}: stalls, cut at ${ms} ms, ${applyAt === null ? 'never applied' : `applied at ${applyAt} ms`}`);
        return { kind: 'cut', ms, applyAt };
      }
      // Leases and registrations stay reliable: their faults are the crash and the pause, by time.
      // (Trims too: they change nothing a session sees, and draw nothing, so a seed's other faults stay put.)
      if (call === 'acquire' || call === 'renew' || call === 'heartbeat' || call === 'trim') return undefined;
      let fault: Fault | undefined;
      if (random.chance(f.lost ?? 0)) fault = { kind: 'lost' };
      else if (random.chance(f.refused ?? 0)) fault = { kind: 'refused' };
      else if (random.chance(f.delay ?? 0)) fault = { kind: 'delay', ms: random.int(1, f.maxDelay ?? 200) };
      if (fault !== undefined && fault.kind !== 'delay') this.note(`${id} ${call}: reply ${fault.kind}`);
      if (fault === undefined && (f.late ?? 0) > 0 && late.chance(f.late ?? 0)) {
        fault = { kind: 'late', ms: late.int(1, f.maxLate ?? 50) };
        this.note(`${id} ${call}: applies ${fault.ms} ms late`);
      }
      return fault;
    };
    // The handler's delays run on its process's clock: a paused or crashed process's handler stops with it.
    // A throw out of one of its callbacks would end a real process: a violation, and the process crashes.
    const clock = new ProcessClock(
      this.clock,
      (error) => {
        this.violations.push(`step ${this.stats.steps}: ${id} threw out of a callback (a process would exit): ${String(error)}`);
        worker.crash();
      },
      this.#skew(id),
    );
    const delay = (ms?: number): Promise<void> => {
      if (ms !== undefined) return new Promise((resolve) => void clock.setTimeout(resolve, ms));
      const draw = random.next();
      if (draw < 0.4) return Promise.resolve();
      if (draw < 0.8) {
        const turns = random.int(1, 5);
        return new Promise((resolve) => {
          let left = turns;
          const turn = () => (--left === 0 ? resolve() : clock.setImmediate(turn));
          clock.setImmediate(turn);
        });
      }
      return new Promise((resolve) => void clock.setTimeout(resolve, random.int(1, 50)));
    };
    // (The release's migrate names the process it is made for.)
    const worker: SimProcess<I, O> = new SimProcess<I, O>(
      id,
      this,
      clock,
      this.#release(release, delay, () => worker),
      faults,
    );
    this.processes.push(worker);
    return worker;
  }

  /**
   * With `oldJoins`, drawn at a crash (whose process is replaced by one of its own release, or of the one deployed
   * last once its own was stopped): an older release that does not migrate, whose worker joins too (an old worker
   * started during a deploy). Drawn only with releases: a run without them draws as before they existed.
   */
  #oldJoiner(): number | undefined {
    const releases = this.releases;
    if (releases === undefined) return undefined;
    const older = releases.map((_, i) => i).filter((i) => i < this.deployed && releases[i].migrate !== true);
    if (older.length === 0 || !this.random.chance(this.options.oldJoins ?? 0)) return undefined;
    return this.random.pick(older);
  }

  /** Adds a release (a run with releases): its index, for `deploy`. */
  addRelease(release: SimRelease): number {
    if (this.releases === undefined) throw new Error('a run without releases');
    return this.releases.push(release) - 1;
  }

  /** The live processes of release `index` stop gracefully (as on SIGTERM: `close()`); resolves once they have. */
  async stopRelease(index: number): Promise<void> {
    this.#stopped.add(index);
    await Promise.all(this.processes.filter((p) => !p.dead && p.release === index).map((p) => p.close()));
  }

  /** Deploys a release: its processes start; `stopOld` later, the live processes of other releases close. */
  deploy(d: SimDeploy): void {
    this.deployed = d.release;
    this.note(`deploy of release ${d.release} (${this.releases?.[d.release]?.version ?? ''})`);
    for (let i = d.workers ?? 2; i > 0; i--) this.spawn(d.release);
    if (d.stopOld === undefined) return;
    this.clock.setTimeout(() => {
      for (let r = 0; r < d.release; r++) this.#stopped.add(r);
      for (const p of this.processes) if (!p.dead && p.release < d.release) void p.close();
    }, d.stopOld);
  }

  /** The process that owns `partition` now crashes (a new process is started); false if none owns it. */
  crash(partition: number, why = ''): boolean {
    const victim = this.processes.find((p) => !p.dead && p.runs.has(partition));
    if (victim !== undefined) this.#kill(victim, why);
    return victim !== undefined;
  }

  #kill(victim: SimProcess<I, O>, why = ''): void {
    this.stats.crashes++;
    this.note(`${victim.id} crashes${why}`);
    victim.crash();
    // Its release comes back, unless that was stopped, or others of it still live during a deploy (the orchestrator
    // scales the old release down as the new one comes up: an old worker killed then is not restarted).
    const scaledDown =
      this.releases !== undefined &&
      victim.release < this.deployed &&
      this.processes.some((p) => !p.dead && p.release === victim.release);
    this.spawn(this.#stopped.has(victim.release) || scaledDown ? this.deployed : victim.release);
    const old = this.#oldJoiner();
    if (old !== undefined) this.spawn(old);
  }

  /** Draws this step's crash and pause. */
  fault(): void {
    const f = this.options.faults ?? {};
    const after = f.crashAfterCommits?.[this.#crashedAfter];
    if (after !== undefined && this.commits >= after) {
      if (this.crash(0, ` (after commit ${after})`)) this.#crashedAfter++;
      return;
    }
    const afterWake = f.crashAfterWakes?.[this.#crashedAfterWake];
    if (afterWake !== undefined && this.wakes >= afterWake) {
      if (this.crash(0, ` (after wake-up ${afterWake})`)) this.#crashedAfterWake++;
      return;
    }
    const at = f.crashAt?.[this.#crashedAt];
    if (at !== undefined && this.clock.now() >= at) {
      if (this.crash(0, ` (crashAt ${at})`)) this.#crashedAt++;
      return;
    }
    const owners = this.processes.filter((p) => !p.dead && p.runs.size > 0);
    if (owners.length === 0) return;
    if (this.stats.crashes < (f.maxCrashes ?? 3) && this.random.chance(f.crash ?? 0)) {
      this.#kill(this.random.pick(owners));
      return;
    }
    if (this.stats.pauses < (f.maxPauses ?? 2) && this.random.chance(f.pause ?? 0)) {
      const victim = this.random.pick(owners);
      const ms = victim.ttl + this.random.int(1, victim.ttl);
      this.stats.pauses++;
      this.note(`${victim.id} pauses ${ms} ms`);
      victim.clock.pause(this.clock.now() + ms);
      this.limiters.session?.paused(victim, ms);
      this.limiters.step?.paused(victim, ms);
    }
  }

  /** The buffers' bounds, checked at each step. */
  check(): void {
    const invariant = this.options.invariant;
    if (invariant !== undefined) {
      const owner = (p: number): string | null => {
        const token = this.store.holder(p);
        return token === null ? null : token.slice(0, token.lastIndexOf(':'));
      };
      const live = this.processes.filter((p) => !p.dead);
      // (The fleet's status as `redisVersions()` reads it: once per check, whatever the versions asked.)
      let status: ReturnType<typeof versionStatus> | undefined;
      const broken = invariant({
        drained: (version) =>
          drainedIn(
            (status ??= versionStatus(
              Array.from({ length: this.store.partitions }, (_, p) => ({ counts: this.store.versions(p), holder: owner(p) })),
              new Set(live.map((p) => p.id)),
              new Map(live.flatMap((p) => (p.advert === undefined ? [] : [[p.id, p.advert] as const]))),
            )),
            version,
          ),
        now: this.clock.now(),
        skipped: this.#skipped,
        partitions: Array.from({ length: this.store.partitions }, (_, p) => {
          const counts = this.store.versions(p);
          return {
            owner: owner(p),
            versions: [...counts].filter(([, n]) => n > 0).map(([v]) => v),
            counts,
          };
        }),
        processes: this.processes
          .filter((p) => !p.dead)
          .map((p) => ({
            id: p.id,
            release: p.release,
            version: p.version,
            sessions: [...p.runs.values()].flatMap((run) =>
              [...run.sessions.values()].map((session) => ({ partition: run.partition, version: session.opening.version })),
            ),
            up: !p.clock.paused && !p.closing,
            registered: this.store.registered(p.id),
            partitions: [...p.runs.keys()],
          })),
      });
      if (broken !== undefined) this.violations.push(`step ${this.stats.steps}: ${broken}`);
    }
    for (const p of this.processes) {
      if (p.dead) continue;
      for (const run of p.runs.values()) {
        // As stats() reads it: the entries handlers have taken are out of the figure first (it is an upper bound).
        run.reconcile();
        // The bound is on events read from the log: a timer's event given to its session is counted without
        // room reserved for it (it was read from no log).
        let timers = 0;
        for (const session of run.sessions.values()) for (const e of session.inbox.entries()) if (e.id.includes('-t')) timers++;
        if (run.buffered > p.share() + timers) {
          this.violations.push(
            `step ${this.stats.steps}: p${run.partition} buffered ${run.buffered} > its share ${p.share()} (+ ${timers} timers' events)`,
          );
        }
      }
    }
  }

  /** Nothing pending, undelivered or kept for a session, and no live session left. */
  settled(): boolean {
    for (let p = 0; p < this.store.partitions; p++) {
      // (Counted, not listed: asked after every step, and an open session's pending entries grow with its steps.)
      if (this.store.kept(p) > 0) return false;
      if (unrecorded(this.store, () => this.store.lag(p)) > 0) return false;
    }
    // (A session whose end is committed may still be finishing: a leak shows as a run that never settles.)
    return this.processes.every((worker) => worker.dead || worker.live === 0);
  }

  /**
   * A step of the run (a clock step, an input taken, an output yielded, a commit or wake-up applied). Past either
   * bound of the move under way, `by` (the process whose handler made it) is stopped as a crash stops it: a handler
   * that takes inputs or yields outputs without end at one time runs in promise jobs only, and never returns to
   * `runUntil`, which then reports the steps.
   */
  progress(by: SimProcess<I, O> | null): void {
    this.stats.steps++;
    if (by === null) return;
    const b = this.#bound;
    const now = this.clock.now();
    if (now !== b.time) {
      b.time = now;
      b.handlers = 0;
    }
    b.handlers++;
    const over = this.#over();
    if (over !== null && !by.dead) this.#kill(by, ` (out of steps: ${over})`);
  }

  /** Which bound of the move under way the steps have reached, if any. */
  #over(): 'steps' | 'at once' | null {
    const b = this.#bound;
    if (this.stats.steps >= b.last) return 'steps';
    return b.time === this.clock.now() && b.handlers >= simBounds.maxStepsAtOnce ? 'at once' : null;
  }

  /**
   * Steps until `done()` (looked at whenever nothing else can run), or past `deadline` (virtual ms), or past the
   * bounds of `simBounds` (`exhausted` says which), or with nothing left to run at all; how it stopped.
   */
  async runUntil(done: () => boolean, deadline: number): Promise<RunOutcome> {
    this.#bound = { last: this.stats.steps + simBounds.maxSteps, time: this.clock.now(), handlers: 0 };
    this.exhausted = null;
    try {
      for (;;) {
        await quiesce();
        this.check();
        if (done()) return 'done';
        if (this.clock.now() > deadline) return 'deadline';
        this.exhausted = this.#over();
        if (this.exhausted !== null) return 'steps';
        this.fault();
        this.#jump(deadline);
        if (!this.clock.step()) return 'idle';
        this.stats.steps++;
      }
    } finally {
      // Between moves nothing runs: no bound.
      this.#bound = { last: Infinity, time: NaN, handlers: 0 };
    }
  }

  /**
   * Over a long quiet span, moves the clock on at once: when every partition is leased by a live process that is
   * not paused, no live process runs a partition it has lost, and nothing runs now (no immediate), the timers before the next one that is work (an event's
   * append, or a process's: a timer's wake-up, a tick, an age marker, a retry, a handler's delay) are only the
   * processes' keep-alive ones (lease renewals, idle reads' timeouts; `ProcessClock.setTimeout`). The span up to a
   * lease period before that next timer, or the deadline, is skipped: the keep-alive timers move on with the time,
   * and the leases are extended by as much, as if the processes had been stopped meanwhile. Far-apart events, and
   * an open session's timer hours ahead, then cost steps for what happens around them, not for the time between.
   */
  #jump(deadline: number): void {
    const ttl = this.limits.leaseTtl ?? 3000;
    const target = Math.min(this.clock.nextFixed() ?? Infinity, deadline + 1) - ttl;
    const by = target - this.clock.now();
    if (!(by > JUMP_LEASES * ttl) || by === Infinity || this.clock.busy) return;
    const live = this.processes.filter((p) => !p.dead);
    if (live.some((p) => p.clock.paused)) return;
    for (let p = 0; p < this.store.partitions; p++) {
      const holder = this.store.holder(p);
      if (holder === null || !live.some((w) => w.runs.get(p)?.lease.token === holder)) return;
    }
    // A process that still runs a partition whose lease another holds (back from a pause) is not quiet: it drops
    // it at its next renewal, which the span would put off (and its sessions, waiting on nothing of the log, with it).
    if (live.some((w) => [...w.runs.values()].some((run) => this.store.holder(run.partition) !== run.lease.token))) return;
    // (The leases first: the store drops one whose time has passed by its clock.)
    this.store.extendLeases(by);
    this.clock.postpone(by);
    for (const w of live) {
      for (const run of w.runs.values()) {
        run.validUntil += by;
        run.renewedAt += by;
        run.lastTrim += by;
      }
    }
    this.stats.jumps++;
    this.#skipped += by;
    this.note(`quiet: the clock moves ${by} ms on`);
  }

  /** Runs everything due up to `time`, then moves the clock to it; how it stopped (`done`: it reached `time`). */
  async advanceTo(time: number): Promise<RunOutcome> {
    const outcome = await this.runUntil(() => !this.clock.busy && (this.clock.next() ?? Infinity) > time, time);
    if (outcome === 'done' || outcome === 'idle') {
      this.clock.idleUntil(time);
      this.stats.time = this.clock.now() - this.start;
      return 'done';
    }
    return outcome;
  }

  /** The outputs written so far, per partition in the order written. */
  outputs(): OutputItem<O>[] {
    const outputs: OutputItem<O>[] = [];
    for (let p = 0; p < this.store.partitions; p++) {
      for (const [id, list] of this.store.outputs(p)) {
        const item = outputItem(this.codec as Codec<O>, p, id, list);
        if (item !== null) outputs.push(item);
      }
    }
    return outputs;
  }

  /** Every process stops: their sessions are let go (what they committed stays in the store). */
  async stop(): Promise<void> {
    for (const p of this.processes) if (!p.dead) p.crash();
    await quiesce();
  }
}

/** Runs the simulation of `options` to its end: every event handled and every session ended, or a violation. */
export async function simulate<I, O>(options: SimOptions<I, O>): Promise<SimResult<O>> {
  const sim = new Simulation<I, O>(options);
  options.started?.(sim.clock);
  const ids: string[] = new Array<string>(options.events.length);
  let appended = 0;
  options.events.forEach((e, i) => {
    sim.clock.setTimeout(
      () => {
        ids[i] = sim.append(e.key, e.event);
        appended++;
        options.appended?.(i, e.key, ids[i]);
      },
      Math.max(0, e.at - sim.start),
    );
  });
  const lastAt = options.events.reduce((t, e) => Math.max(t, e.at), sim.start);
  const deadline = lastAt + (options.settleWithin ?? DAY_MS);
  const outcome = await sim.runUntil(() => appended === options.events.length && sim.settled(), deadline);
  if (outcome !== 'done') {
    const why =
      outcome === 'steps'
        ? sim.exhausted === 'at once'
          ? `in ${simBounds.maxStepsAtOnce} steps at one time`
          : `in ${simBounds.maxSteps} steps`
        : outcome === 'idle'
          ? 'with nothing left to run'
          : `by t=${deadline}`;
    sim.violations.push(`not settled ${why} (t=${sim.clock.now()}, ${sim.stats.steps} steps)`);
  }
  sim.stats.time = sim.clock.now() - sim.start;
  await sim.stop();
  const leftovers: PartitionLeftovers[] = [];
  const ends: Map<string, string>[] = [];
  for (let p = 0; p < sim.store.partitions; p++) {
    leftovers.push(sim.store.leftovers(p));
    ends.push(sim.store.ends(p));
  }
  const { session, step } = sim.limiters;
  const stats = {
    ...sim.stats,
    commits: sim.commits,
    wakes: sim.wakes,
    keyStateStarts: sim.processes.reduce((n, p) => n + p.counters.keyStateStarts, 0),
    ...(session === null && step === null
      ? {}
      : {
          permits: {
            ...(session === null ? {} : { session: { max: session.max, granted: session.granted } }),
            ...(step === null ? {} : { step: { max: step.max, granted: step.granted } }),
          },
        }),
  };
  let outputs: OutputItem<O>[] | undefined;
  return {
    // Read when asked: a run stopped by its bound of steps may have written hundreds of thousands.
    get outputs() {
      return (outputs ??= sim.outputs());
    },
    ids,
    errors: sim.errors,
    sessions: sim.sessions,
    violations: sim.violations,
    outcome,
    exhausted: sim.exhausted,
    leftovers,
    ends,
    stats,
    ...(sim.store instanceof RecordingStore ? { record: sim.store.record() } : {}),
  };
}
