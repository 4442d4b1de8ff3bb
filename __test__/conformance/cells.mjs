// The cells of the stream contract: every kind of stream and every composition, made the same way, so that
// each promise (the *.test.mjs files beside this one) runs over all of them. A new kind of stream gets every
// promise checked by adding one entry to KINDS (and it joins the compositions by itself).
import { batch, streamFn, task, workerFn } from 'velo-stream';
import * as handlers from './handlers.mjs';

export const HANDLERS = new URL('./handlers.mjs', import.meta.url);

/** The contract's failure: an event `{ fail: true }`. */
const fails = (e) => e !== null && typeof e === 'object' && e.fail === true;
const failure = () => Object.assign(new Error('contract failure'), { code: 'E_CONTRACT' });

/** The contract's task and batch functions: `made(e)` of each item, failing at `{ fail: true }`. */
const perItem = (e) => {
  if (fails(e)) throw failure();
  return handlers.made(e);
};
const perBatch = (items) => perItem(items[0]);
/** Unordered stages emit in completion order: with fn answering at once, that is input order, and a result ready before a failure in the same burst of promise jobs is delivered first (it was dropped once). */
const UNORDERED = { ordered: false, concurrency: 2 };

/**
 * Each kind makes a stream function that passes every event on (as `made(e)` in handlers.mjs: unchanged but
 * for `{ make }` events), in order, and fails (code E_CONTRACT) at an event `{ fail: true }`. `config`: StreamConfig fields (buffer, idleTimeout...).
 * `handler`: whether it has a handler iterating its input (task stages do not).
 */
export const KINDS = {
  generator: { handler: true, make: (config) => streamFn(handlers.echo, config) },
  task: { handler: false, make: (config) => task(perItem, config) },
  batch: { handler: false, make: (config) => batch(perBatch, { maxSize: 1, ...config }) },
  'task unordered': { handler: false, make: (config) => task(perItem, { ...UNORDERED, ...config }) },
  'batch unordered': { handler: false, make: (config) => batch(perBatch, { maxSize: 1, ...UNORDERED, ...config }) },
  worker: { handler: true, make: (config) => workerFn(HANDLERS, { export: 'echo', threads: 1, ...config }) },
  'worker transfer': {
    handler: true,
    make: (config) => workerFn(HANDLERS, { export: 'echo', threads: 1, transfer: true, ...config }),
  },
};

/** A pass-through generator stage, the neighbour in compositions. */
const gen = (config) => streamFn(handlers.echo, config);

/**
 * The cells: `make(config)` gives the cell's stream function (a pipe's config goes to its first stage, which
 * holds the idle clock). `kind` is the kind under test; in a pipe, it is the stage that fails.
 */
export function cells() {
  const out = [];
  for (const [kind, { make, handler }] of Object.entries(KINDS)) {
    out.push({ name: kind, kind, handler, make });
    out.push({ name: `${kind} | generator`, kind, handler, make: (config) => make(config).pipe(gen()) });
    out.push({ name: `generator | ${kind}`, kind, handler, make: (config) => gen(config).pipe(make()) });
    out.push({ name: `generator | ${kind} | generator`, kind, handler, make: (config) => gen(config).pipe(make()).pipe(gen()) });
  }
  out.push({
    name: 'task | worker',
    kind: 'task',
    handler: false,
    make: (config) => KINDS.task.make(config).pipe(KINDS.worker.make()),
  });
  out.push({
    name: 'worker | batch',
    kind: 'worker',
    handler: true,
    make: (config) => KINDS.worker.make(config).pipe(KINDS.batch.make()),
  });
  return out;
}

/** The events of the contract: objects, so that a copy (a worker's) and the original compare equal. */
export const EVENTS = Array.from({ length: 50 }, (_, i) => ({ i, tag: `e${i}` }));

/**
 * Sends `events` into a stream of `kind` (buffer 8) while reading it, then ends it; the outputs, and the error
 * (its name, code and message) if the stream failed. A refused send is left to show in the outputs.
 */
export async function through(kind, events) {
  const s = KINDS[kind].make({ buffer: 8 }).open();
  const sending = (async () => {
    for (const e of events) await s.send(e).catch(() => {});
    s.end();
  })();
  const out = [];
  try {
    for await (const v of s) out.push(v);
    return { out };
  } catch (error) {
    return { out, error: { name: error.name, code: error.code, message: error.message } };
  } finally {
    await sending;
  }
}
