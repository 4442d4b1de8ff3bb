// A session's hooks into its stream (`Checkpoints`: checkpoints, timers, the rule's state) as it opens: a new
// session's, or a restored one's from its checkpoint, with the debounce it opened with wrapped around its handler.
import type { Codec } from '../common/codec';
import type { JournalEntry, Snapshot } from '../common/transport';
import type { Debounce } from '../../core/debounce';
import { type SessionLimits, type SessionState, newState } from '../rules/session-rules';
import { DEBOUNCE_TIMER_KEY, type DebouncePending, debouncedHandler, decodePending, encodePending } from './debounce-input';
import type { PartitionHost } from './partition-host';
import { kTaken, type StreamKind } from '../../core/protocol';
import type { SessionScope } from '../common/trace-context';
import type { Grant } from './session-permits';
import { Checkpoints, serializeError, sidTime } from './session';
import { Journal } from './journal';

/** What the hooks need of the worker. */
export type HooksHost = Pick<
  PartitionHost<unknown, unknown>,
  'maxCheckpointBytes' | 'maxEventBytes' | 'maxJournalBytes' | 'counters' | 'report'
> & {
  readonly codec: Codec<unknown>;
  readonly fn: { readonly name: string };
};

/**
 * The session's rule state and hooks: from `snapshot` (its checkpoint, readable) if given, else a new session's;
 * `restored` is the state its handler starts from (`ctx.restored`); `debounce`, the one it opened with.
 */
export function sessionHooks(
  w: HooksHost,
  sid: string,
  limits: SessionLimits,
  debounce: Debounce | null,
  restored: unknown,
  snapshot: Snapshot | undefined,
  journal?: readonly JournalEntry[],
): { rule: SessionState; checkpoints: Checkpoints } {
  // The rule's state: the checkpoint's, restored, or a new session's.
  const rule = newState(
    sidTime(sid),
    snapshot === undefined
      ? undefined
      : {
          last: snapshot.lastTime,
          events: snapshot.events,
          timerCount: snapshot.timers ?? 0,
          timers: (snapshot.pending ?? []).map(([id, time, payload, key]) =>
            key === undefined ? { id, time, payload } : { id, time, payload, key },
          ),
        },
  );
  const checkpoints = new Checkpoints(restored, rule, limits, sid, w);
  // Its journal: the records the last owner left, asked for again from the call after its checkpoint's.
  checkpoints.journal = new Journal(sid, snapshot?.calls ?? 0, journal, w, (error) => serializeError(error, w.maxEventBytes));
  checkpoints.journal.inputs = () => checkpoints.inputsTaken;
  checkpoints.journal.yielded = () => checkpoints.yieldedForInput();
  if (snapshot !== undefined) checkpoints.lastInput = snapshot.lastInput;
  if (debounce !== null) {
    checkpoints.encodeDebounce = (pending) => encodePending(w.codec, pending as DebouncePending);
    checkpoints.wrapHandler = (handler) =>
      debouncedHandler(
        handler,
        debounce,
        {
          wake: (time, payload) => checkpoints.wakeDebounce(time, payload),
          cancel: () => checkpoints.cancelDebounce(),
          // What a restored session had pending: its debounce timer, restored with the checkpoint.
          pending: () => {
            const timer = rule.timers.find((t) => t.key === DEBOUNCE_TIMER_KEY);
            return timer === undefined ? undefined : { id: timer.id, pending: decodePending(w.codec, timer.payload) };
          },
          dropped: () => {
            w.counters.debounced++;
          },
          endsHeld: () => {
            const timer = rule.timers.find((t) => t.key === DEBOUNCE_TIMER_KEY);
            if (timer !== undefined) checkpoints.showEntry(`t${timer.id}`, timer.time);
          },
        },
        w.fn.name,
      );
  }
  return { rule, checkpoints };
}

/**
 * A traced session's attributes (a tracer provider is registered): its partition, whether a new owner opened it again
 * (`resumed`: from its checkpoint, or by replaying the last owner's entries) and from its checkpoint, and how long it
 * waited for its `limiter.session` permits before it opened.
 */
export function traceSession(
  scope: SessionScope,
  stream: Pick<StreamKind<never, unknown>, typeof kTaken>,
  partition: number,
  resumed: boolean,
  restored: boolean,
  grant: Grant | null,
): void {
  scope.taken = () => stream[kTaken]();
  scope.session?.setAttributes({ 'velo.partition': partition, 'velo.resumed': resumed, 'velo.restored': restored });
  if (grant?.waited === true) scope.session?.setAttribute('velo.limiter.wait_ms', grant.waitedMs);
}
