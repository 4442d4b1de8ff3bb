// Where a session's outputs come among its inputs, so that a migrated session's new handler does not write again
// what its old one wrote after their common checkpoint. A place is `[inputs, position]`: `inputs` taken since the
// session's latest checkpoint before the output was yielded, and the output's position among those yielded since
// the last of them (since the checkpoint, for `inputs` 0). Two handlers that take the same inputs from the same
// checkpoint place their outputs alike, whatever each yields per input.
import type { OutputPlace } from '../common/transport';

/** Whether an output at place `a` is covered by one written at place `b`: before it, or of an input `b` answered. */
export function placedBy(a: OutputPlace, b: OutputPlace): boolean {
  return a[0] < b[0] || (a[0] === b[0] && (b[2] === true || a[1] <= b[1]));
}

/**
 * The places of one instance's outputs, in the order they are yielded: told of each input it takes (with the
 * outputs it had yielded then) and of each checkpoint queued, asked for each output in turn.
 */
export class OutputPlaces {
  /** Outputs yielded before each input taken, from `#head` on: the takes no output has been placed after yet. */
  #yields: number[] = [];
  #head = 0;
  /** Inputs taken before the output placed last, and the outputs yielded before the last of them. */
  #inputs = 0;
  #base = 0;
  /** The latest checkpoint queued: inputs taken and outputs yielded by it (its instance's own counts). */
  #fromInputs = 0;
  #fromYields = 0;
  /** Outputs yielded when the instance last asked for its next input (-1: never). */
  #askedAt = -1;
  /** The place given last (marked answered once the instance asks past it, while its commit may still be built). */
  #last: [number, number, true?] | null = null;
  #lastOutput = 0;

  /** The instance takes an input, having yielded `yielded` outputs. */
  took(yielded: number): void {
    this.#yields.push(yielded);
  }

  /** The instance asks for its next input, having yielded `yielded` outputs: the inputs before are answered. */
  asked(yielded: number): void {
    this.#askedAt = yielded;
    if (this.#last !== null && yielded >= this.#lastOutput) this.#last[2] = true;
  }

  /** A checkpoint made after `inputs` inputs and `yielded` outputs is queued: later places count from it. */
  checkpointed(inputs: number, yielded: number): void {
    this.#fromInputs = inputs;
    this.#fromYields = yielded;
  }

  /** The place of the instance's `output`-th output (from 1), asked in order. */
  place(output: number): OutputPlace {
    const yields = this.#yields;
    let head = this.#head;
    while (head < yields.length && yields[head] < output) {
      this.#base = yields[head++];
      this.#inputs++;
    }
    if (head === yields.length) {
      // (A new empty array: an emptied one keeps its backing store, in each of thousands of sessions.)
      if (head > 0) this.#yields = [];
      head = 0;
    } else if (head > 1024) {
      yields.splice(0, head);
      head = 0;
    }
    this.#head = head;
    const inputs = this.#inputs - this.#fromInputs;
    const place: [number, number, true?] = inputs > 0 ? [inputs, output - this.#base] : [0, output - this.#fromYields];
    if (this.#askedAt >= output) place[2] = true;
    this.#last = place;
    this.#lastOutput = output;
    return place;
  }
}
