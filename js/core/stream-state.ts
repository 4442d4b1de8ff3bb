// A running stream's flags, in one word (`HandlerStream.#state`), and the table of the combinations it may hold.
//
// A stream's JavaScript half tracks thirty yes/no facts: whether the core may hold something for the handler or
// for readers, whether its input ended or was released, whether its idle clock runs and how it is held, which of
// the per-turn lists it is on, its fused read, its wait for a limiter, its pipe group's view. As separate
// fields they made the stream wide (one field each; those only some streams use sat in its `Extras`, made by the
// first write) and left no place to say which combinations are legal. As bits of one small integer (Node's
// streams keep theirs the same way, in `kState`), they cost one field and no extras, a test reads them in one
// load, and the table below says what may go together.
//
// The word stays a small integer (V8's Smi: 31 bits with pointer compression): bits 0-29, and no more. A flag
// that does not fit is configuration (`Extras.groupLast`, `Extras.ownedReads`: set once, never cleared), or goes
// in a second word.
//
// The phase is the core's (`NativeStream.state`, public as `stream.state`); the word says what JavaScript knows
// of it without asking (see `#inputOpen` in stream.ts) and what is pending around it.

/** The bits of `HandlerStream.#state` (inlined by the compiler: a bit test is a constant `and`). */
export const enum S {
  // --- input ---
  /** The core may hold something for the handler (events, a lent batch to acknowledge, the end): a take may find it. */
  IN_PENDING = 1 << 0,
  /** The input ended with nothing held for the handler: every take answers `Take.Ended` without asking the core. */
  IN_ENDED = 1 << 1,
  /** The input has not ended by `end()` or the idle deadline. */
  INPUT_OPEN = 1 << 2,
  /** The handler left its input loop (`HandlerInput.return()`); it may still run. */
  INPUT_RELEASED = 1 << 3,
  /** The handler (or body) was told its input ended. */
  END_TAKEN = 1 << 4,
  /** Session hooks ended the input in front of what was buffered: every take answers done. */
  INPUT_CUT = 1 << 5,
  // --- output ---
  /** The core may hold something for readers. */
  OUT_PENDING = 1 << 6,
  /** The handler returned (or the stream was cancelled) with nothing held for readers: takes answer `Take.Ended`. */
  OUT_ENDED = 1 << 7,
  /** The stage holds values other than numbers (emptied, not refilled in place, when it is reset). */
  STAGED_VALUES = 1 << 8,
  /** Some output went into the core's output lane: its room is the core's to tell. */
  OUT_LANE_USED = 1 << 9,
  /** Batch readers are served on the next turn (`wakeLater`). */
  WAKE_SCHEDULED = 1 << 10,
  /** One reader pulls the outputs (`kFuse`): the handler runs only while a read waits. */
  FUSED = 1 << 11,
  /** Fused, the handler waits at its yield for the next read. */
  PARKED = 1 << 12,
  // --- the handler ---
  /** The handler (or body) has finished: returned, thrown, or stopped after a cancel. */
  HANDLER_DONE = 1 << 13,
  // --- the idle clock ---
  /** The stream has an idle deadline that may still end it. */
  IDLE_ON = 1 << 14,
  /** Held strongly for its idle deadline (`holdIdle`). */
  IDLE_HELD = 1 << 15,
  /** In the thread's idle maps (from the turn after its open). */
  IDLE_WATCHED = 1 << 16,
  /** The next handoff lists the stream in `toStamp`. */
  STAMP_DUE = 1 << 17,
  /** The idle clock is held for a pulled source the handler has not asked yet. */
  PULL_HELD = 1 << 18,
  // --- holds and per-turn lists ---
  /** Holds the process alive (`holdAlive`). */
  KEEPING_ALIVE = 1 << 19,
  /** In `toRecheck`. */
  RECHECK_LISTED = 1 << 20,
  /** In `unreported`. */
  HANDOFFS_LISTED = 1 << 21,
  // --- admission (a limiter's permit) ---
  /** Waits for a limiter's permit before its handler starts. */
  WAITING_ADMISSION = 1 << 22,
  /** The same, with its idle clock held for it (it had a clock, and native state, when the wait began). */
  ADMITTING = 1 << 23,
  /** In `readingAdmitted`, holding the process alive for a read while it waits for admission. */
  ADMISSION_HELD = 1 << 24,
  // --- a pipe stage's group (what this stream last told it) ---
  GROUP_RUNNING = 1 << 25,
  GROUP_READING = 1 << 26,
  GROUP_ADMITTING = 1 << 27,
  // --- a task body's timers ---
  /** The body's deadlines are pending. */
  TIMERS_PENDING = 1 << 28,
  /** ... and they answer waiting sends too. */
  TIMERS_ANSWER_SENDS = 1 << 29,
}

/**
 * What a debug read adds to the word, from the stream's other fields (never stored: computed by `stateOf`, for
 * tests only).
 */
export const enum F {
  /** `cancel()` was accepted. */
  CANCELLED = 1 << 0,
  /** The handler threw (or a pipe's earlier stage failed: `kFailAtEnd`). */
  FAILED = 1 << 1,
  /** A stage of a pipe, in a keep-alive group. */
  IN_GROUP = 1 << 2,
  /** The handler pulls its events from a source (`SourcePull`). */
  PULLED = 1 << 3,
  /** The handler (or body) waits for input. */
  INPUT_WAITS = 1 << 4,
  /** The handler is paused at a yield (a full buffer, or parked), or a body waits for room. */
  HANDLER_PAUSED = 1 << 5,
  /** A read waits for an output. */
  READER = 1 << 6,
  /** A send waits for room. */
  SENDERS = 1 << 7,
  /** Outputs are staged, not yet in the core. */
  STAGED = 1 << 8,
  /** The core's phase (`stream.state`) is `open`. */
  PHASE_OPEN = 1 << 9,
  /** ... `ending`. */
  PHASE_ENDING = 1 << 10,
  /** ... `done`. */
  PHASE_DONE = 1 << 11,
  /** ... `failed`. */
  PHASE_FAILED = 1 << 12,
  /** ... `cancelled`. */
  PHASE_CANCELLED = 1 << 13,
}

/** The names of the bits of `S` and `F`, in bit order (for messages and tests). */
export const STATE_BITS: readonly string[] = [
  'IN_PENDING',
  'IN_ENDED',
  'INPUT_OPEN',
  'INPUT_RELEASED',
  'END_TAKEN',
  'INPUT_CUT',
  'OUT_PENDING',
  'OUT_ENDED',
  'STAGED_VALUES',
  'OUT_LANE_USED',
  'WAKE_SCHEDULED',
  'FUSED',
  'PARKED',
  'HANDLER_DONE',
  'IDLE_ON',
  'IDLE_HELD',
  'IDLE_WATCHED',
  'STAMP_DUE',
  'PULL_HELD',
  'KEEPING_ALIVE',
  'RECHECK_LISTED',
  'HANDOFFS_LISTED',
  'WAITING_ADMISSION',
  'ADMITTING',
  'ADMISSION_HELD',
  'GROUP_RUNNING',
  'GROUP_READING',
  'GROUP_ADMITTING',
  'TIMERS_PENDING',
  'TIMERS_ANSWER_SENDS',
];
export const FACT_BITS: readonly string[] = [
  'CANCELLED',
  'FAILED',
  'IN_GROUP',
  'PULLED',
  'INPUT_WAITS',
  'HANDLER_PAUSED',
  'READER',
  'SENDERS',
  'STAGED',
  'PHASE_OPEN',
  'PHASE_ENDING',
  'PHASE_DONE',
  'PHASE_FAILED',
  'PHASE_CANCELLED',
];

/** A stream's state as a debug read sees it: the word, and the facts around it. */
export interface StateView {
  readonly word: number;
  readonly facts: number;
}

/**
 * One row of the table: when every bit of `if` (and of `ifFacts`) is set, every bit of `all` (and `allFacts`)
 * must be set, at least one of `any`/`anyFacts` (when given), and none of `none` (nor `noneFacts`).
 */
export interface StateRule {
  readonly if: number;
  readonly ifFacts?: number;
  readonly all?: number;
  readonly allFacts?: number;
  readonly any?: number;
  readonly anyFacts?: number;
  readonly none?: number;
  readonly noneFacts?: number;
  readonly why: string;
}

/**
 * The legal combinations, as rules every state between two turns of a stream's code holds (within one call the
 * word passes through others: `#afterHandler` sets its bits one by one). A state is legal when it breaks none.
 *
 * By phase (the core's, `stream.state`), what the word holds:
 *
 * | phase       | INPUT_OPEN | IDLE_ON     | HANDLER_DONE | IN_PENDING  | OUT_PENDING | OUT_ENDED |
 * |-------------|------------|-------------|--------------|-------------|-------------|-----------|
 * | open        | 1          | 0/1         | 0            | 0/1         | 0/1         | 0         |
 * | ending      | 0/1        | 0           | 0/1          | 0/1         | 0/1         | 0/1       |
 * | done        | 0/1        | 0           | 1            | 1           | 1           | 0/1       |
 * | failed      | 0/1        | 0           | 0/1          | 0/1         | 0/1         | 0/1       |
 * | cancelled   | 0/1        | 0           | 0/1          | 1           | 1           | 0/1       |
 *
 * (`done` with `OUT_ENDED` clear: the core saw the last output taken, and this stream has not taken again since.
 * `IDLE_ON` clear in `ending`, `failed` and `cancelled` follows from its own row: every way into them stops the
 * clock.) Across phases, the rows of `STATE_TABLE`, each with its reason. They were found by checking every
 * state the core test files reach (a temporary check after each write of the word), not only written down.
 */
export const STATE_TABLE: readonly StateRule[] = [
  // The lifecycle.
  {
    if: 0,
    ifFacts: F.PHASE_OPEN,
    all: S.INPUT_OPEN,
    none: S.HANDLER_DONE | S.OUT_ENDED,
    why: 'an open stream has its input open and its handler running',
  },
  {
    if: S.IDLE_ON,
    all: S.INPUT_OPEN,
    none: S.INPUT_RELEASED | S.HANDLER_DONE,
    noneFacts: F.CANCELLED,
    why: 'the idle clock stops when the input ends or is released, the handler finishes, or a cancel',
  },
  {
    if: 0,
    ifFacts: F.PHASE_DONE,
    all: S.HANDLER_DONE | S.IN_PENDING | S.OUT_PENDING,
    none: S.IDLE_ON,
    why: 'a done stream has finished its handler and given out every output',
  },
  { if: 0, ifFacts: F.PHASE_CANCELLED, allFacts: F.CANCELLED, why: 'the core is cancelled only by the cancel this stream made' },
  {
    if: 0,
    ifFacts: F.CANCELLED,
    allFacts: F.PHASE_CANCELLED,
    all: S.IN_PENDING | S.OUT_PENDING,
    noneFacts: F.SENDERS | F.READER | F.STAGED,
    why: 'a cancel answers every waiting send and read, drops the stage, and sends every take to the core',
  },
  {
    if: S.HANDLER_DONE,
    all: S.IN_PENDING | S.OUT_PENDING,
    noneFacts: F.SENDERS | F.PHASE_OPEN,
    why: 'a finished handler takes nothing, and answers every waiting send',
  },
  {
    if: S.HANDLER_DONE,
    ifFacts: F.INPUT_WAITS,
    allFacts: F.FAILED,
    why: 'a handler finished with a take of its input waiting has thrown (the take is left unanswered)',
  },
  // The input.
  { if: S.IN_ENDED, all: S.IN_PENDING, none: S.INPUT_OPEN, why: 'an ended input is pending for good (its end is the answer)' },
  { if: S.INPUT_RELEASED, all: S.IN_PENDING, why: 'a released input sends every take to the core' },
  { if: S.INPUT_CUT, all: S.END_TAKEN, why: 'an input cut by the hooks has told the handler it ended' },
  { if: S.END_TAKEN, any: S.IN_PENDING | S.INPUT_CUT, why: 'the end, once taken, stays the answer' },
  {
    if: 0,
    ifFacts: F.INPUT_WAITS,
    none: S.IN_PENDING | S.HANDLER_DONE,
    why: 'a handler waits for input only when a take would find nothing',
  },
  { if: 0, ifFacts: F.SENDERS, all: S.IN_PENDING, why: 'a parked send leaves something for the handler to take' },
  // The output.
  { if: S.OUT_ENDED, all: S.OUT_PENDING, why: 'an ended output is pending for good (its end is the answer)' },
  { if: S.STAGED_VALUES, allFacts: F.STAGED, why: 'the stage is emptied when its last output goes' },
  { if: S.PARKED, all: S.FUSED, allFacts: F.HANDLER_PAUSED, why: 'only a fused handler parks, at its yield' },
  // The idle clock.
  { if: S.IDLE_HELD, all: S.IDLE_ON, why: 'a stream is held for its deadline only while it has one' },
  { if: S.IDLE_WATCHED, all: S.IDLE_ON, why: 'the idle maps watch a stream only while it has a deadline' },
  { if: S.STAMP_DUE, all: S.IDLE_ON, why: 'handoffs are stamped only for an idle clock' },
  { if: S.PULL_HELD, allFacts: F.PULLED, why: 'the clock is held for a pulled source only while there is one' },
  // Admission, groups, timers.
  {
    if: S.ADMISSION_HELD,
    all: S.WAITING_ADMISSION,
    allFacts: F.READER,
    noneFacts: F.IN_GROUP,
    why: 'a read holds a stream waiting for admission only while both wait (a pipe stage: its group holds it)',
  },
  { if: S.KEEPING_ALIVE, noneFacts: F.IN_GROUP, why: 'a pipe stage is kept alive by its group' },
  { if: S.GROUP_RUNNING, allFacts: F.IN_GROUP, why: 'only a pipe stage tells a group' },
  { if: S.GROUP_READING, allFacts: F.IN_GROUP, why: 'only a pipe stage tells a group' },
  { if: S.GROUP_ADMITTING, allFacts: F.IN_GROUP, why: 'only a pipe stage tells a group' },
  { if: S.TIMERS_ANSWER_SENDS, all: S.TIMERS_PENDING, why: 'timers answer sends only while they are pending' },
];

/** The names of the bits set in `word` (of `S`, or of `F` with `facts`). */
export function bitNames(word: number, facts = false): string[] {
  const names = facts ? FACT_BITS : STATE_BITS;
  const out: string[] = [];
  for (let i = 0; i < names.length; i++) if ((word & (1 << i)) !== 0) out.push(names[i]);
  return out;
}

/** The first rule of `table` the state breaks, as a sentence, or undefined: the state is legal. */
export function illegalState(view: StateView, table: readonly StateRule[] = STATE_TABLE): string | undefined {
  const { word, facts } = view;
  for (const rule of table) {
    if ((word & rule.if) !== rule.if) continue;
    const ifFacts = rule.ifFacts ?? 0;
    if ((facts & ifFacts) !== ifFacts) continue;
    const all = rule.all ?? 0;
    const allFacts = rule.allFacts ?? 0;
    const ok =
      (word & all) === all &&
      (facts & allFacts) === allFacts &&
      (rule.any === undefined || (word & rule.any) !== 0 || (rule.anyFacts !== undefined && (facts & rule.anyFacts) !== 0)) &&
      (rule.any !== undefined || rule.anyFacts === undefined || (facts & rule.anyFacts) !== 0) &&
      (word & (rule.none ?? 0)) === 0 &&
      (facts & (rule.noneFacts ?? 0)) === 0;
    if (!ok) {
      const when = [...bitNames(rule.if), ...bitNames(ifFacts, true)].join('+') || 'always';
      return `${when}: ${rule.why} (state ${bitNames(word).join('|') || '0'}; facts ${bitNames(facts, true).join('|') || '0'})`;
    }
  }
  return undefined;
}
