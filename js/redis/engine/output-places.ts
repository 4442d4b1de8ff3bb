// Where a session's outputs come among its inputs, so that a migrated session's new handler does not write again
// what its old one wrote after their common checkpoint. A place is `[inputs, position]`: `inputs` taken since the
// session's latest checkpoint before the output was yielded, and the output's position among those yielded since
// the last of them (since the checkpoint, for `inputs` 0). Two handlers that take the same inputs from the same
// checkpoint place their outputs alike, whatever each yields per input.
import type { OutputPlace, OutputRecord } from '../common/transport';

/** Whether an output at place `a` is covered by one written at place `b`: before it, or of an input `b` answered. */
export function placedBy(a: OutputPlace, b: OutputPlace): boolean {
  return a[0] < b[0] || (a[0] === b[0] && (b[2] === true || a[1] <= b[1]));
}

/**
 * An output as queued for its commit, its place kept as numbers in it: one object per output (a record, its place
 * and the wrapper the outbox queued were three, and a place marked answered grew its array). `at` is made when read.
 */
export class QueuedOutput implements OutputRecord {
  /** Its place's inputs (-1: it has no place: a session without hooks, or its failure) and position. */
  inputs = -1;
  position = 0;
  /** Its handler had asked for its next input: no output of the same input comes after it. */
  answered = false;
  constructor(
    readonly sid: string,
    readonly seq: number,
    readonly key: string,
    readonly payload: Buffer | string | undefined,
    readonly error: string | undefined,
    readonly traceparent: string | undefined,
  ) {}

  get at(): OutputPlace | undefined {
    if (this.inputs < 0) return undefined;
    return this.answered ? [this.inputs, this.position, true] : [this.inputs, this.position];
  }
}

/**
 * The places of one instance's outputs, in the order they are yielded: told of each input it takes (with the
 * outputs it had yielded then) and of each checkpoint queued, asked for each output in turn. It makes nothing per
 * input or output while its handler's outputs are forwarded before its next input (the oldest take waiting for an
 * output is kept in fields, the rest in an array made while a handler runs ahead), and keeps no output once its
 * handler has asked past it: a live session holds nothing of its last event's until its next.
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
  /** The output placed last, while its handler has not asked past it (it is marked answered then). */
  #last: QueuedOutput | null = null;
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

  /** The instance asks for its next input, having yielded `yielded` outputs: the inputs before are answered. */
  asked(yielded: number): void {
    this.#askedAt = yielded;
    if (this.#last !== null && yielded >= this.#lastOutput) {
      this.#last.answered = true;
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
    this.#placeAnswered = this.#askedAt >= output;
    this.#last = null;
    this.#lastOutput = output;
  }

  /** The place found last, as stored. */
  get current(): OutputPlace {
    return this.#placeAnswered ? [this.#placeInputs, this.#placePosition, true] : [this.#placeInputs, this.#placePosition];
  }

  /** Gives `output` the place found last; marked answered once the instance asks past it (its commit may still be built). */
  placeInto(output: QueuedOutput): void {
    output.inputs = this.#placeInputs;
    output.position = this.#placePosition;
    output.answered = this.#placeAnswered;
    this.#last = this.#placeAnswered ? null : output;
  }
}
