// OpenTelemetry traces, when the application has them. `@opentelemetry/api` is an optional peer dependency:
// without it, or without a registered tracer provider, nothing here makes a span, and a stream pays one check
// at its open (`streamTrace`).
//
// A stream's span is a child of the context active at `open()` (or `run()`, `feed()`), and the handler runs in
// the span's context at every step: its code, its awaits and its yields, and a task stage's calls. Async
// context does not follow an async generator's steps by itself (each step runs in the context of whoever calls
// `next()`), so the library, which makes those calls, sets it (`run`).
import type { StreamMetrics } from '../types';

// What this module uses of `@opentelemetry/api`, declared here rather than imported: the declarations of
// velo-stream must compile for applications that do not have the package.
type Attributes = Record<string, string | number | boolean>;
/** A span, as the API's `Span`. */
export interface Span {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setAttributes(attributes: Attributes): unknown;
  addEvent(name: string, attributes?: Attributes): unknown;
  recordException(exception: Error): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
  spanContext(): TraceParent & { traceState?: { serialize(): string } };
  /** API 1.8+ (SDK 2.x): a link added after the span's start. */
  addLink?(link: Link): unknown;
  isRecording?(): boolean;
}

/** A link to another span (the API's `Link`). */
interface Link {
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
/** What this module uses of a context. */
interface ContextValues {
  getValue(key: symbol): unknown;
  setValue(key: symbol, value: unknown): Context;
  deleteValue(key: symbol): Context;
}
interface Tracer {
  startSpan(name: string, options: { attributes: Attributes; links?: Link[] }, context: Context): Span;
}
interface TracerProvider {
  getTracer(name: string, version: string): Tracer;
  getDelegate?(): TracerProvider;
}
interface Api {
  trace: {
    getTracerProvider(): TracerProvider;
    setSpan(context: Context, span: Span): Context;
    setSpanContext(context: Context, spanContext: TraceParent & { isRemote: boolean }): Context;
    getSpanContext(context: Context): (TraceParent & { traceState?: { serialize(): string } }) | undefined;
  };
  ROOT_CONTEXT: Context & ContextValues;
  createContextKey(description: string): symbol;
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

/** The package's version, for the tracer's: read once something is traced. */
let version: string | undefined;

function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (version ??= (require('../../package.json') as { version: string }).version);
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

/** One stream's span and the context its handler runs in. */
export class StreamTrace {
  readonly #api: Api;
  readonly #tracer: Tracer;
  readonly span: Span;
  readonly context: Context;

  constructor(a: Api, t: Tracer, name: string, kind: string, parent: Context) {
    this.#api = a;
    this.#tracer = t;
    this.span = t.startSpan(`velo ${name}`, { attributes: { 'velo.function': name, 'velo.kind': kind } }, parent);
    // A Redis session's stream (SessionScope.open): its handler's active span follows the events it takes.
    const scope =
      SCOPE_KEY === undefined ? undefined : ((parent as ContextValues).getValue(SCOPE_KEY) as SessionScope | undefined);
    if (scope === undefined) this.context = a.trace.setSpan(parent, this.span);
    else {
      scope.bind(this.span);
      this.context = a.trace.setSpan((parent as ContextValues).deleteValue(SCOPE_KEY as symbol), scope.asSpan());
    }
  }

  /** Runs `fn` in the span's context: what it starts (promises, timers, awaits) carries it on. */
  run<T>(fn: () => T): T {
    return this.#api.context.with(this.context, fn);
  }

  /** A child span of this one (a task call), started now. */
  child(name: string, attributes: Attributes): Span {
    return this.#tracer.startSpan(name, { attributes }, this.context);
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
    if (error !== undefined) this.#failed(span, error.error);
    span.end();
  }

  /** Ends the span: the outcome, the stream's counts, and the error or cancel reason. */
  end(outcome: TraceOutcome, metrics: StreamMetrics | undefined, error?: { error: unknown }): void {
    const span = this.span;
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
      span.addEvent('cancelled', { 'velo.reason': describeReason(error.error) });
    span.end();
  }

  #failed(span: Span, error: unknown): void {
    if (error instanceof Error) span.recordException(error);
    span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: describeReason(error) });
  }
}

function describeReason(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  try {
    return String(reason);
  } catch {
    return 'an unprintable value';
  }
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

// ---- velo-stream/redis: W3C trace context through the log (docs/tracing.md, "Redis") ----

/** The longest `tracestate` carried or accepted, in characters (the W3C minimum every vendor must propagate). */
const MAX_TRACESTATE = 512;
/** Links a session span gets, to distinct producer spans; past them, `velo.links_dropped` counts the rest. */
export const MAX_SESSION_LINKS = 128;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** The API and the tracer, if a tracer provider is registered: else undefined (one property read when the API was never set up). */
function traced(): [Api, Tracer] | undefined {
  if ((globalThis as { [API_GLOBALS]?: { trace?: unknown } })[API_GLOBALS]?.trace === undefined) return undefined;
  const a = api === undefined ? loadApi() : api;
  const t = a === null ? undefined : tracer(a);
  return t === undefined ? undefined : [a as Api, t];
}

/** A span context's `traceparent` (W3C Trace Context, version 00). */
function formatTraceparent(c: TraceParent): string {
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * What a producer writes into its entries: the `traceparent` (and `tracestate`, if any, and not too long) of the
 * span context active at the send, when a tracer provider is registered and a valid span context is active.
 */
export function activeTraceFields(): [string, string] | undefined {
  const found = traced();
  if (found === undefined) return undefined;
  const a = found[0];
  const c = a.trace.getSpanContext(a.context.active());
  if (c === undefined || !TRACEPARENT.test(formatTraceparent(c)) || c.traceId === ZERO_TRACE || c.spanId === ZERO_SPAN)
    return undefined;
  let state: string;
  try {
    state = c.traceState?.serialize() ?? '';
  } catch {
    state = '';
  }
  return [formatTraceparent(c), state.length <= MAX_TRACESTATE ? state : ''];
}

/**
 * A span context read from the network: `traceparent` version 00 exactly (55 characters, lowercase hex, ids
 * not all zero); anything else (another version, garbage, a long value) is undefined. Never throws.
 */
export function parseTraceparent(
  a: Api,
  traceparent: string | undefined,
  tracestate?: string,
): (TraceParent & { isRemote: true; traceState?: unknown }) | undefined {
  if (typeof traceparent !== 'string' || traceparent.length !== 55) return undefined;
  const m = TRACEPARENT.exec(traceparent);
  if (m === null || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return undefined;
  const c: TraceParent & { isRemote: true; traceState?: unknown } = {
    traceId: m[1],
    spanId: m[2],
    traceFlags: parseInt(m[3], 16) & 1,
    isRemote: true,
  };
  if (typeof tracestate === 'string' && tracestate.length > 0 && tracestate.length <= MAX_TRACESTATE) {
    try {
      if (typeof a.createTraceState === 'function') c.traceState = a.createTraceState(tracestate);
    } catch {
      // A trace state the API cannot read is left out.
    }
  }
  return c;
}

/**
 * The OpenTelemetry context of an output read from Redis (`redisOutputs`, `onOutput`, `redisMaterialize`): `base`
 * (default: the active context) with the output's session span as its remote parent, so that a span started in
 * it continues the session's trace. When the output carries no (valid) `traceparent`, `base` itself; without
 * `@opentelemetry/api` installed, `base` (undefined if not given). A malformed value never throws.
 * @example tracer.startSpan('store', {}, outputTraceContext(item, context.active()))
 */
export function outputTraceContext<C extends object>(item: { traceparent?: string }, base: C): C;
export function outputTraceContext(item: { traceparent?: string }): Context | undefined;
export function outputTraceContext(item: { traceparent?: string }, base?: Context): Context | undefined {
  const a = api === undefined ? loadApi() : api;
  if (a === null) return base;
  const parent = base ?? a.context.active();
  const c = parseTraceparent(a, item?.traceparent);
  return c === undefined ? parent : a.trace.setSpanContext(parent, c);
}

/** What a Redis session's span and events need from the entries. */
export interface TracedEntry {
  readonly id: string;
  readonly traceparent?: string;
  readonly tracestate?: string;
  readonly wake?: string;
}

/**
 * The span context a Redis session's handler sees as its active span (`trace.getActiveSpan()`): the span of the
 * event it took last (`velo event`), or the session's span before its first. Spans started in the handler are
 * children of that event's span; `end()` is ignored (the library ends its spans). An object standing for a span
 * that changes as the handler takes events, so that an `await` or a `yield` of the handler (whose context is
 * fixed when it starts) still finds the event it is at.
 */
export class SessionScope {
  readonly #api: Api;
  readonly #tracer: Tracer;
  #session: Span | undefined;
  /** Events delivered to this instance of the session, as [index, span], from the one it took last. */
  readonly #events: [number, Span][] = [];
  #delivered = 0;
  /** Events the handler took (the stream's count). */
  taken: () => number = () => 0;
  /** Producer spans linked to the session span (`traceId-spanId`), at most MAX_SESSION_LINKS. */
  readonly #linked = new Set<string>();
  #dropped = 0;
  #traceparent: string | undefined;

  constructor(a: Api, t: Tracer) {
    this.#api = a;
    this.#tracer = t;
  }

  /** Opens the session's stream (`open`) so that its span is a root span bound to this scope. */
  open<T>(open: () => T): T {
    const a = this.#api;
    return a.context.with(a.ROOT_CONTEXT.setValue(scopeKey(a), this), open);
  }

  /** The session's span, once its stream opened traced. */
  get session(): Span | undefined {
    return this.#session;
  }

  /** Called by the session's StreamTrace. */
  bind(span: Span): void {
    this.#session = span;
  }

  /** The session span's `traceparent`, for its outputs. */
  get traceparent(): string | undefined {
    if (this.#session === undefined) return undefined;
    return (this.#traceparent ??= formatTraceparent(this.#session.spanContext()));
  }

  /**
   * An event delivered to the session: its span (`velo event`, a child of the session's, linked to the producer's
   * span context from the entry, marked `velo.replay` when replayed), and a link from the session's span.
   */
  event(entry: TracedEntry, replay: boolean): void {
    const session = this.#session;
    if (session === undefined) return;
    const a = this.#api;
    const producer = parseTraceparent(a, entry.traceparent, entry.tracestate);
    const attributes: Attributes = { 'velo.entry_id': entry.id };
    if (replay) attributes['velo.replay'] = true;
    if (entry.wake !== undefined) attributes['velo.wake'] = true;
    const span = this.#tracer.startSpan(
      'velo event',
      { attributes, links: producer === undefined ? [] : [{ context: producer }] },
      a.trace.setSpan(a.ROOT_CONTEXT, session),
    );
    span.end();
    // Drops the events before the one the handler is at: it never goes back.
    const at = this.taken() - 1;
    let drop = 0;
    while (drop < this.#events.length && this.#events[drop][0] < at) drop++;
    if (drop > 0) this.#events.splice(0, drop);
    this.#events.push([this.#delivered++, span]);
    if (producer === undefined) return;
    const id = `${producer.traceId}-${producer.spanId}`;
    if (this.#linked.has(id)) return;
    if (this.#linked.size < MAX_SESSION_LINKS && typeof session.addLink === 'function') {
      this.#linked.add(id);
      session.addLink({ context: producer });
    } else session.setAttribute('velo.links_dropped', ++this.#dropped);
  }

  /** The span the handler is at: the last event it took (the session's before its first). */
  #current(): Span | undefined {
    const at = this.taken() - 1;
    for (let i = this.#events.length - 1; i >= 0; i--) if (this.#events[i][0] <= at) return this.#events[i][1];
    return this.#session;
  }

  /** As a `Span` (what the handler's context holds). */
  asSpan(): Span {
    const target = (): Span => this.#current() as Span;
    const span = {
      spanContext: () => target().spanContext(),
      setAttribute(key: string, value: string | number | boolean) {
        target().setAttribute(key, value);
        return span;
      },
      setAttributes(attributes: Attributes) {
        target().setAttributes(attributes);
        return span;
      },
      addEvent(name: string, attributes?: Attributes) {
        target().addEvent(name, attributes);
        return span;
      },
      addLink(link: Link) {
        target().addLink?.(link);
        return span;
      },
      addLinks(links: Link[]) {
        for (const link of links) target().addLink?.(link);
        return span;
      },
      recordException(exception: Error) {
        target().recordException(exception);
      },
      setStatus(status: { code: number; message?: string }) {
        target().setStatus(status);
        return span;
      },
      updateName() {
        return span;
      },
      isRecording: () => target().isRecording?.() ?? true,
      end() {},
    };
    return span;
  }
}

let SCOPE_KEY: symbol | undefined;
function scopeKey(a: Api): symbol {
  return (SCOPE_KEY ??= a.createContextKey('velo-stream redis session'));
}

/** A Redis session's scope, if a tracer provider is registered (else undefined: one property read). */
export function sessionScope(): SessionScope | undefined {
  const found = traced();
  return found === undefined ? undefined : new SessionScope(found[0], found[1]);
}
