// A fake streaming model for tests of handlers that call one: each call answers differently (its own answer id and
// token count), as a real model does, so a test finds a handler that would splice two answers after a takeover.
// Asked to continue after chunks of an answer (`ctx.stream`'s `chunks`), it continues the same answer: one it started,
// or one another process's model started (a takeover by another worker), as the chunks carry it.
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
  for (const key of Object.keys(options))
    if (key !== 'tokens' && key !== 'pace')
      throw invalidValue(`fakeModel(): unknown option ${JSON.stringify(key)} (it takes tokens and pace)`);
  const { tokens = [3, 12], pace } = options;
  const [min, max] = Array.isArray(tokens) ? tokens : [NaN, NaN];
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 1 || max < min)
    throw invalidValue(
      `fakeModel(): options.tokens must be [min, max] integers with 1 <= min <= max. Received ${describe(tokens)}`,
    );
  if (pace !== undefined && typeof pace !== 'function')
    throw invalidType(`fakeModel(): options.pace must be a function, not ${describe(pace)}`);
  /** Every answer this model started: its id -> its length and its first prompt (which its texts are made of). */
  const started = new Map<string, { of: number; prompt: string }>();
  /** Answers another model started that this one continued, known as their chunks carried them. */
  const adopted = new Map<string, { of: number; prompt: string }>();
  return {
    get answers() {
      return started.size;
    },
    stream(prompt: string, after: readonly FakeToken[] = []) {
      checkAfter(prompt, after, started, adopted);
      return streamed(prompt, after);
    },
  };

  async function* streamed(prompt: string, after: readonly FakeToken[]): AsyncGenerator<FakeToken, void, undefined> {
    const first = after[0];
    let answer: string;
    let of: number;
    if (first === undefined) {
      answer = randomUUID();
      of = min + Math.floor(Math.random() * (max - min + 1));
      started.set(answer, { of, prompt });
    } else {
      ({ answer, of } = first);
      prompt = (started.get(answer) ?? adopted.get(answer))!.prompt;
    }
    for (let i = after.length; i < of; i++) {
      if (pace !== undefined) await pace();
      yield { answer, i, of, text: textOf(prompt, answer, i) };
    }
  }
}

/** Chunk `i`'s text of answer `answer`, first asked with `prompt`. */
function textOf(prompt: string, answer: string, i: number): string {
  return `${prompt.length % 7 === 0 ? '' : ' '}${answer.slice(0, 4)}-${i}`;
}

/**
 * `after` is the head of one answer (chunks `0, 1, ...` of one id, with their length and text) as a model streamed
 * it: one this model started (`started`), or, unknown here, one another process's model started, whose chunks are
 * then taken as they are (its texts made of `prompt`, as a continuation asks with the same prompt) and kept in
 * `adopted`. Else refused.
 */
function checkAfter(
  prompt: string,
  after: unknown,
  started: ReadonlyMap<string, { of: number; prompt: string }>,
  adopted: Map<string, { of: number; prompt: string }>,
): void {
  const refuse = (why: string) =>
    invalidValue(`fakeModel().stream(): "after" must be the first chunks of one answer, as a model streamed them: ${why}`);
  if (!Array.isArray(after)) throw invalidType(`fakeModel().stream(): "after" must be an array. Received ${describe(after)}`);
  if (after.length === 0) return;
  const first = after[0] as Partial<FakeToken> | null;
  const answer = first === null || typeof first !== 'object' ? undefined : first.answer;
  if (typeof answer !== 'string' || answer === '')
    throw refuse(`chunk 0 is ${describe(first)}, not a chunk of a fake model's answer (it has no answer id)`);
  let known = started.get(answer) ?? adopted.get(answer);
  if (known === undefined) {
    const of = (first as Partial<FakeToken>).of;
    if (typeof of !== 'number' || !Number.isSafeInteger(of) || of < 1)
      throw refuse(`chunk 0 has the answer length ${describe(of)}`);
    if (typeof prompt !== 'string')
      throw invalidType(`fakeModel().stream(): the prompt must be a string. Received ${describe(prompt)}`);
    known = { of, prompt };
  }
  if (after.length > known.of) throw refuse(`${after.length} chunks of an answer of ${known.of}`);
  after.forEach((chunk: Partial<FakeToken> | null, i) => {
    if (chunk === null || typeof chunk !== 'object' || chunk.answer !== answer)
      throw refuse(`chunk ${i} is ${describe(chunk)}, not a chunk of the same answer`);
    if (chunk.i !== i) throw refuse(`chunk ${i} has index ${String(chunk.i)}`);
    if (chunk.of !== known.of || chunk.text !== textOf(known.prompt, answer, i))
      throw refuse(`chunk ${i} is not as the model gave it (its "of" or "text" differs)`);
  });
  if (!started.has(answer)) adopted.set(answer, known);
}
