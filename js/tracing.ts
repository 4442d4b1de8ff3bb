// OpenTelemetry traces, when the application has them. `@opentelemetry/api` is an optional peer dependency:
// without it, or without a registered tracer provider, nothing here makes a span, and a stream pays one check
// at its open (`streamTrace`).
//
// A stream's span is a child of the context active at `open()` (or `run()`, `feed()`), and the handler runs in
// the span's context at every step: its code, its awaits and its yields, and a task stage's calls. Async
// context does not follow an async generator's steps by itself (each step runs in the context of whoever calls
// `next()`), so the library, which makes those calls, sets it (`run`).
import type { StreamMetrics } from './types';
import { cutText, isError, readString, textOf } from './text';

// What this module uses of `@opentelemetry/api`, declared here rather than imported: the declarations of
// velo-stream must compile for applications that do not have the package.
export type Attributes = Record<string, string | number | boolean>;
/** A span, as the API's `Span`. */
export interface Span {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setAttributes(attributes: Attributes): unknown;
  addEvent(name: string, attributes?: Attributes): unknown;
  recordException(exception: { name: string; message: string; stack?: string }): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
  spanContext(): TraceParent & { traceState?: { serialize(): string } };
  /** API 1.8+ (SDK 2.x): a link added after the span's start. */
  addLink?(link: Link): unknown;
  isRecording?(): boolean;
}

/** A link to another span (the API's `Link`). */
export interface Link {
  context: TraceParent & { isRemote?: boolean; traceState?: unknown };
  attributes?: Attributes;
}

/** A span's identity, as it crosses to a worker thread (the API's `SpanContext`, less its trace state). */
export interface TraceParent {
  traceId: string;
  spanId: string;
  traceFlags: number;
}
/** An OpenTelemetry context (opaque here). */
export type Context = object;
export interface Tracer {
  startSpan(name: string, options: { attributes: Attributes; links?: Link[] }, context: Context): Span;
}
interface TracerProvider {
  getTracer(name: string, version: string): Tracer;
  getDelegate?(): TracerProvider;
}
export interface Api {
  trace: {
    getTracerProvider(): TracerProvider;
    setSpan(context: Context, span: Span): Context;
    setSpanContext(context: Context, spanContext: TraceParent & { isRemote: boolean }): Context;
    getSpanContext(context: Context): (TraceParent & { traceState?: { serialize(): string } }) | undefined;
  };
  ROOT_CONTEXT: Context;
  createTraceState?(raw: string): unknown;
  context: { active(): Context; with<T>(context: Context, fn: () => T): T };
  SpanStatusCode: { ERROR: number };
}

/** The API, once looked for: null when the application does not have it. */
let api: Api | null | undefined;

function loadApi(): Api | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    api = require('@opentelemetry/api') as Api;
  } catch {
    api = null;
  }
  return api;
}

/**
 * Where every copy of `@opentelemetry/api` 1.x registers its globals (a tracer provider under `trace`): a copy
 * loaded by the application and this library's share it. Read first, so that a stream of an application that
 * registered no tracer provider pays one property read, and the API is not even loaded.
 */
const API_GLOBALS = Symbol.for('opentelemetry.js.api.1');

// Made present (undefined, not enumerable) on the global object if no copy of the API made it yet. V8 reads an
// absent property of the global object by a dictionary probe at every open (about 140 instructions), a present
// one from its cell (about 10). The read stays exact: a provider registered later, by any copy of the API, is
// seen by the next open. The API reads an undefined value as nothing registered and assigns the property as it
// would create it (`globalThis[key] ??= { version }`); deleting it (a test's reset) only costs the probe again.
if (!Object.prototype.hasOwnProperty.call(globalThis, API_GLOBALS)) {
  try {
    Object.defineProperty(globalThis, API_GLOBALS, { value: undefined, writable: true, configurable: true });
  } catch {
    // A frozen global object: the read stays a probe.
  }
}

/** The package's version, for the tracer's: read once something is traced. */
let version: string | undefined;

function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (version ??= (require('../package.json') as { version: string }).version);
}

/**
 * The tracer, if a tracer provider is registered. Without one, the API's global provider is its proxy, whose
 * delegate is the no-op provider; that is told by the delegate's class name, since the application and this
 * library may load different copies of the API (ESM and CommonJS builds), whose classes differ.
 */
function tracer(a: Api): Tracer | undefined {
  const provider = a.trace.getTracerProvider();
  const delegate = typeof provider.getDelegate === 'function' ? provider.getDelegate() : provider;
  if (delegate.constructor?.name === 'NoopTracerProvider') return undefined;
  return provider.getTracer('velo-stream', packageVersion());
}

/** How a stream ended, as its span's `velo.outcome`. */
export type TraceOutcome = 'completed' | 'failed' | 'cancelled';

/**
 * Streams nobody references and nothing ended are collected (and counted cancelled): their spans end then, as
 * cancelled. A span holds no reference to its stream, so this keeps nothing alive.
 */
const abandoned = new FinalizationRegistry<StreamTrace>((trace) => trace.abandoned());

/** One stream's span and the context its handler runs in. */
export class StreamTrace {
  readonly #api: Api;
  readonly #tracer: Tracer;
  readonly span: Span;
  readonly context: Context;
  #ended = false;
  /** Call spans (`child`) started and not ended yet: a stream collected with calls that never settle ends them. */
  #calls: Set<Span> | undefined = undefined;

  constructor(a: Api, t: Tracer, name: string, kind: string, parent: Context) {
    this.#api = a;
    this.#tracer = t;
    // A Redis session's stream (velo-stream/redis: `openInScope`): a root span, and its handler's active span
    // follows the events it takes. Taken by the first trace its open makes (a pipe's, before its stages').
    const scope = openingScope;
    openingScope = undefined;
    if (scope !== undefined) parent = a.ROOT_CONTEXT;
    this.span = t.startSpan(`velo ${name}`, { attributes: { 'velo.function': name, 'velo.kind': kind } }, parent);
    if (scope === undefined) this.context = a.trace.setSpan(parent, this.span);
    else {
      scope.bind(this.span);
      this.context = a.trace.setSpan(parent, scope.asSpan());
    }
  }

  /** Ends the span as cancelled if `owner`, the stream it traces, is collected before it ended. */
  watch(owner: object): void {
    abandoned.register(owner, this, this);
  }

  /** Runs `fn` in the span's context: what it starts (promises, timers, awaits) carries it on. */
  run<T>(fn: () => T): T {
    return this.#api.context.with(this.context, fn);
  }

  /** A child span of this one (a task call), started now. */
  child(name: string, attributes: Attributes): Span {
    const span = this.#tracer.startSpan(name, { attributes }, this.context);
    (this.#calls ??= new Set()).add(span);
    return span;
  }

  /** Runs `fn` in the context of `span`, a child of this one (a task call's). */
  runIn<T>(span: Span, fn: () => T): T {
    return this.#api.context.with(this.#api.trace.setSpan(this.context, span), fn);
  }

  /** A stage of a pipe traced under this span. */
  stage(name: string, kind: string): StreamTrace {
    return new StreamTrace(this.#api, this.#tracer, name, kind, this.context);
  }

  /** Ends a call span (`child`) with its outcome. */
  endCall(span: Span, error?: { error: unknown }): void {
    this.#calls?.delete(span);
    try {
      if (error !== undefined) this.#failed(span, error.error);
    } finally {
      span.end();
    }
  }

  /**
   * The stream was collected before its span ended: the span ends as cancelled, and so do its calls that never
   * settled (nothing will settle them: what would have was collected with the stream).
   */
  abandoned(): void {
    const why = 'abandoned: collected by the garbage collector';
    this.end('cancelled', undefined, { error: why });
    const calls = this.#calls;
    this.#calls = undefined;
    if (calls === undefined) return;
    for (const span of calls) {
      try {
        span.setAttribute('velo.outcome', 'cancelled');
        span.addEvent('cancelled', { 'velo.reason': why });
      } finally {
        span.end();
      }
    }
  }

  /** Ends the span: the outcome, the stream's counts, and the error or cancel reason. */
  end(outcome: TraceOutcome, metrics: StreamMetrics | undefined, error?: { error: unknown }): void {
    if (this.#ended) return;
    this.#ended = true;
    abandoned.unregister(this);
    const span = this.span;
    try {
      span.setAttribute('velo.outcome', outcome);
      if (metrics !== undefined) {
        span.setAttributes({
          'velo.events_in': metrics.eventsIn,
          'velo.events_out': metrics.eventsOut,
          'velo.backpressure_waits': metrics.backpressureWaits,
          'velo.queue_wait_p50_us': metrics.queueWaitP50Us,
          'velo.queue_wait_p99_us': metrics.queueWaitP99Us,
        });
        if (metrics.retries !== undefined) span.setAttribute('velo.task.retries', metrics.retries);
        if (metrics.skipped !== undefined) span.setAttribute('velo.task.skipped', metrics.skipped);
      }
      if (outcome === 'failed' && error !== undefined) this.#failed(span, error.error);
      else if (outcome === 'cancelled' && error !== undefined)
        span.addEvent('cancelled', { 'velo.reason': traceText(error.error) });
    } finally {
      span.end();
    }
  }

  /**
   * Records a failure. The error is the user's value, maybe hostile (a revoked proxy, getters that throw): the
   * SDK's `recordException` reads its fields, so it is given a plain copy of what could be read, and nothing
   * here throws into the stream.
   */
  #failed(span: Span, error: unknown): void {
    const message = traceText(error);
    if (isError(error)) {
      const name = readString(() => error.name);
      const stack = readString(() => error.stack);
      span.recordException({
        name: name === undefined ? 'Error' : cutText(name, MAX_TRACE_TEXT),
        message,
        ...(stack === undefined ? {} : { stack: cutText(stack, MAX_TRACE_STACK) }),
      });
    }
    span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message });
  }
}

/** Longest text put in an attribute from a user's value (an error message, a cancel reason, a key), `…` included. */
export const MAX_TRACE_TEXT = 1024;

/**
 * Longest stack put in a span's `exception.stacktrace`, `…` included: four times other texts, room for the frames
 * below the message's line (docs/tracing.md states both bounds).
 */
export const MAX_TRACE_STACK = 4 * MAX_TRACE_TEXT;

/** A value's text for a span (a key, a reason, an error's message), bounded and never throwing (a revoked proxy, a `message` getter that throws). */
export function traceText(value: unknown): string {
  const text = isError(value) ? (readString(() => value.message) ?? 'an unprintable value') : textOf(value);
  return cutText(text, MAX_TRACE_TEXT);
}

/**
 * The trace of a stream about to open, or undefined: no API, no provider. `parent`: a pipe's or a session's
 * trace, whose span is the new one's parent; else the context active now.
 */
export function streamTrace(name: string, kind: string, parent?: StreamTrace): StreamTrace | undefined {
  if (parent !== undefined) return parent.stage(name, kind);
  if ((globalThis as { [API_GLOBALS]?: { trace?: unknown } })[API_GLOBALS]?.trace === undefined) return undefined;
  const a = api === undefined ? loadApi() : api;
  if (a === null) return undefined;
  const t = tracer(a);
  return t === undefined ? undefined : new StreamTrace(a, t, name, kind, a.context.active());
}

/** What crosses to a worker thread with a stream of `workerFn`: its span's identity. */
export function traceParent(trace: StreamTrace): TraceParent {
  const { traceId, spanId, traceFlags } = trace.span.spanContext();
  return { traceId, spanId, traceFlags };
}

/**
 * On a worker thread: runs `fn` (the stream's handler, for its whole life) in a context whose parent is the
 * caller's stream span, so that the handler's spans there are its children. It takes the thread's own API and
 * context manager (the worker's module registers them); without the API, `fn` just runs.
 */
export function withRemoteParent<T>(parent: TraceParent | undefined, fn: () => T): T {
  if (parent === undefined) return fn();
  const a = api === undefined ? loadApi() : api;
  if (a === null) return fn();
  return a.context.with(a.trace.setSpanContext(a.context.active(), { ...parent, isRemote: true }), fn);
}

/** The API and the tracer, if a tracer provider is registered: else undefined (one property read when the API was never set up). */
export function traced(): [Api, Tracer] | undefined {
  if ((globalThis as { [API_GLOBALS]?: { trace?: unknown } })[API_GLOBALS]?.trace === undefined) return undefined;
  const a = api === undefined ? loadApi() : api;
  const t = a === null ? undefined : tracer(a);
  return t === undefined ? undefined : [a as Api, t];
}

/**
 * What a Redis session's stream opens with (velo-stream/redis, trace-context.ts): its span is bound to it, and
 * its handler's active span is `asSpan()`.
 */
export interface ContextScope {
  bind(span: Span): void;
  asSpan(): Span;
}

/**
 * The scope of the open running now (`openInScope`). Handed over synchronously, not through the active context:
 * that would need a context manager, which a worker process without one does not have.
 */
let openingScope: ContextScope | undefined;

/** Runs `open` (a stream's open, synchronous) so that the first trace it makes is bound to `scope`. */
export function openInScope<T>(scope: ContextScope, open: () => T): T {
  openingScope = scope;
  try {
    return open();
  } finally {
    openingScope = undefined;
  }
}

/** The API once looked for (null: not installed). */
export function otelApi(): Api | null {
  return api === undefined ? loadApi() : api;
}
