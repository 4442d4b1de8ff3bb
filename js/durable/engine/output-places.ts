// Where a session's outputs come among its inputs, so that a migrated session's new handler does not write again
// what its old one wrote after their common checkpoint. A place is `[inputs, position]`: `inputs` taken since the
// session's latest checkpoint before the output was yielded, and the output's position among those yielded since
// the last of them (since the checkpoint, for `inputs` 0). Two handlers that take the same inputs from the same
// checkpoint place their outputs alike, whatever each yields per input.
import type { OutputPlace } from '../common/transport';

/**
 * Whether an output at place `a` is covered by one written at place `b`: of an input before b's, or of the input `b`
 * answered (its handler asked past it). An input `b` did not answer (an answer in flight when the old version
 * stopped) covers nothing, unless the new version is `continued` there (it yields from its journal's records: the
 * same answer, continued after the old one's outputs): else the new version's whole answer to it is written after
 * the old version's partial one, so that no answer loses its end to a longer old one, nor is made of one answer's
 * head and another's tail.
 */
export function placedBy(a: OutputPlace, b: OutputPlace, continued = false): boolean {
  return a[0] < b[0] || (a[0] === b[0] && (b[2] === true || (continued && a[1] <= b[1])));
}

/** An output record as queued, its place set (`OutputPlaces.placeInto`) and replaced when marked answered. */
export interface PlacedRecord {
  at?: OutputPlace;
}

/**
 * The places of one instance's outputs, in the order they are yielded: told of each input it takes (with the
 * outputs it had yielded then) and of each checkpoint queued, asked for each output in turn. It makes nothing per
 * input but each output's place, of its final size (the oldest take waiting for an output is kept in fields, the
 * rest in an array made while a handler runs ahead), and keeps no output once its handler has asked past it: a live
 * session holds nothing of its last event's until its next.
 */
export class OutputPlaces {
  /** Takes no output has been placed after yet: the oldest's outputs yielded before it, then the rest's. */
  #takes = 0;
  #firstYields = 0;
  #laterYields: number[] | null = null;
  #laterFrom = 0;
  /** Inputs taken before the output placed last, and the outputs yielded before the last of them. */
  #inputs = 0;
  #base = 0;
  /** The latest checkpoint queued: inputs taken and outputs yielded by it (its instance's own counts). */
  #fromInputs = 0;
  #fromYields = 0;
  /** Outputs yielded when the instance last asked for its next input (-1: never). */
  #askedAt = -1;
  /** The place found last (`place`). */
  #placeInputs = 0;
  #placePosition = 0;
  #placeAnswered = false;
  /** The output placed last, while its handler has not asked past it (its place is marked answered then). */
  #last: PlacedRecord | null = null;
  #lastOutput = 0;

  /** The instance takes an input, having yielded `yielded` outputs. */
  took(yielded: number): void {
    if (this.#takes++ === 0) this.#firstYields = yielded;
    else (this.#laterYields ??= []).push(yielded);
  }

  /** The oldest take has an output placed after it. */
  #shift(): void {
    this.#takes--;
    const later = this.#laterYields;
    if (later === null) return;
    this.#firstYields = later[this.#laterFrom++];
    if (this.#laterFrom === later.length) {
      this.#laterYields = null;
      this.#laterFrom = 0;
    }
  }

  /**
   * The instance asks for its next input, having yielded `yielded` outputs: the inputs before are answered. The output
   * placed last is marked answered only if it is the last yielded: outputs yielded after it (not placed yet, the
   * handler running ahead) are of the same input, and are marked as they are placed.
   */
  asked(yielded: number): void {
    this.#askedAt = yielded;
    if (this.#last !== null && yielded >= this.#lastOutput) {
      // (A new array rather than a third slot: one grown in place makes room for 17 more.)
      if (yielded === this.#lastOutput) this.#last.at = [this.#placeInputs, this.#placePosition, true];
      this.#last = null;
    }
  }

  /** A checkpoint made after `inputs` inputs and `yielded` outputs is queued: later places count from it. */
  checkpointed(inputs: number, yielded: number): void {
    this.#fromInputs = inputs;
    this.#fromYields = yielded;
  }

  /** Finds the place of the instance's `output`-th output (from 1), asked in order: `current`, then `placeInto`. */
  place(output: number): void {
    while (this.#takes > 0 && this.#firstYields < output) {
      this.#base = this.#firstYields;
      this.#inputs++;
      this.#shift();
    }
    const inputs = this.#inputs - this.#fromInputs;
    this.#placeInputs = inputs;
    this.#placePosition = inputs > 0 ? output - this.#base : output - this.#fromYields;
    // Answered: asked past, and the first ask at or after it (the oldest take left, else the latest ask) came right
    // after it, so that no output of its input follows it (`OutputPlace`).
    this.#placeAnswered = this.#askedAt >= output && (this.#takes > 0 ? this.#firstYields : this.#askedAt) === output;
    this.#last = null;
    this.#lastOutput = output;
  }

  /** Inputs taken by the latest checkpoint queued (places count from it). */
  get fromInputs(): number {
    return this.#fromInputs;
  }

  /** The place found last, as stored. */
  get current(): OutputPlace {
    return this.#placeAnswered ? [this.#placeInputs, this.#placePosition, true] : [this.#placeInputs, this.#placePosition];
  }

  /**
   * Gives `output` the place found last; marked answered once the instance asks right after it (its commit may still
   * be built). Not kept once it asked at or past it: answered already, or not its input's last.
   */
  placeInto(output: PlacedRecord): void {
    output.at = this.current;
    this.#last = this.#askedAt >= this.#lastOutput ? null : output;
  }
}
