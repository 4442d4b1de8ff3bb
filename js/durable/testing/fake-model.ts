// A fake streaming model for tests of handlers that call one: each call answers differently (its own answer id and
// token count), as a real model does, so a test finds a handler that would splice two answers after a takeover.
// Asked to continue after chunks it gave (`ctx.stream`'s `chunks`), it continues the same answer.
import { randomUUID } from 'node:crypto';
import { describe, invalidType, invalidValue } from '../../errors';

/** One chunk of a fake model's answer: its answer's id, its index, its answer's length, and its text. */
export interface FakeToken {
  /** Its answer's id: the same for every chunk of one answer, a new one for each answer started. */
  readonly answer: string;
  /** Its index in the answer, from 0. */
  readonly i: number;
  /** Its answer's length, in chunks. */
  readonly of: number;
  /** The token's text. */
  readonly text: string;
}

/** `fakeModel()`'s options. */
export interface FakeModelOptions {
  /** Tokens per answer, drawn at each new answer from `[min, max]`. Default `[3, 12]`. */
  readonly tokens?: readonly [number, number];
  /**
   * Resolves before each token (a model's pace); default none. On the testing kit's virtual clock, use its own
   * waits: a real timer is outside the clock.
   */
  readonly pace?: () => Promise<void>;
}

/** A fake streaming model (see `fakeModel`). */
export interface FakeModel {
  /**
   * Streams an answer to `prompt`: a new one (a new id, a new length), or, given chunks it streamed before (`after`,
   * as `ctx.stream` gives them back), the rest of that same answer.
   */
  stream(prompt: string, after?: readonly FakeToken[]): AsyncGenerator<FakeToken, void, undefined>;
  /** Answers started so far (continuations not counted): how many times the model was really asked. */
  readonly answers: number;
}

/** A fake streaming model whose every new answer differs from the others, for tests of handlers that call a model. */
export function fakeModel(options: FakeModelOptions = {}): FakeModel {
  if (options === null || typeof options !== 'object')
    throw invalidType(`fakeModel(): options must be an object, not ${describe(options)}`);
  const { tokens = [3, 12], pace } = options;
  const [min, max] = Array.isArray(tokens) ? tokens : [NaN, NaN];
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 1 || max < min)
    throw invalidValue(
      `fakeModel(): options.tokens must be [min, max] integers with 1 <= min <= max. Received ${describe(tokens)}`,
    );
  if (pace !== undefined && typeof pace !== 'function')
    throw invalidType(`fakeModel(): options.pace must be a function, not ${describe(pace)}`);
  let answers = 0;
  return {
    get answers() {
      return answers;
    },
    stream(prompt: string, after: readonly FakeToken[] = []) {
      checkAfter(after);
      return streamed(prompt, after);
    },
  };

  async function* streamed(prompt: string, after: readonly FakeToken[]): AsyncGenerator<FakeToken, void, undefined> {
    const first = after[0];
    const answer = first?.answer ?? randomUUID();
    const of = first?.of ?? min + Math.floor(Math.random() * (max - min + 1));
    if (first === undefined) answers++;
    for (let i = after.length; i < of; i++) {
      if (pace !== undefined) await pace();
      yield { answer, i, of, text: `${prompt.length % 7 === 0 ? '' : ' '}${answer.slice(0, 4)}-${i}` };
    }
  }
}

/** `after` is the head of one answer of a fake model, as it streamed it (chunks `0, 1, ...` of one id): else refused. */
function checkAfter(after: unknown): void {
  const refuse = (why: string) =>
    invalidValue(`fakeModel().stream(): "after" must be the first chunks of one of its answers, as it streamed them: ${why}`);
  if (!Array.isArray(after)) throw invalidType(`fakeModel().stream(): "after" must be an array. Received ${describe(after)}`);
  const first = after[0] as Partial<FakeToken> | undefined;
  after.forEach((chunk: Partial<FakeToken> | null, i) => {
    if (chunk === null || typeof chunk !== 'object' || typeof chunk.answer !== 'string')
      throw refuse(`chunk ${i} is ${describe(chunk)}, not a chunk of its`);
    if (chunk.answer !== first?.answer || chunk.of !== first.of) throw refuse(`chunk ${i} is of another answer`);
    if (chunk.i !== i) throw refuse(`chunk ${i} has index ${String(chunk.i)}`);
  });
  if (first !== undefined && !(Number.isSafeInteger(first.of) && after.length <= (first.of as number)))
    throw refuse(`${after.length} chunks of an answer of ${String(first.of)}`);
}
