// velo-stream/redis: W3C trace context through the log (docs/tracing.md, "Redis"). Kept out of the core's
// tracing.ts, so that an application that does not load velo-stream/redis does not load this either.
import {
  type Api,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type TraceParent,
  type Tracer,
  otelApi,
  openInScope,
  traced,
} from '../../tracing';

/** The longest `tracestate` carried or accepted, in characters (the W3C minimum every vendor must propagate). */
const MAX_TRACESTATE = 512;
/** Links a session span gets, to distinct producer spans; past them, `velo.links_dropped` counts the events whose producer span is not linked. */
export const MAX_SESSION_LINKS = 128;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** Whether `text` is a valid `traceparent` of version 00 (lowercase hex, ids not all zero). */
export function isTraceparent(text: string): boolean {
  const m = TRACEPARENT.exec(text);
  return m !== null && m[1] !== ZERO_TRACE && m[2] !== ZERO_SPAN;
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
  // The span context is the application's (maybe a hostile object): tracing never makes a send fail.
  try {
    return readTraceFields();
  } catch {
    return undefined;
  }
}

function readTraceFields(): [string, string] | undefined {
  const found = traced();
  if (found === undefined) return undefined;
  const a = found[0];
  const c = a.trace.getSpanContext(a.context.active());
  if (c === undefined) return undefined;
  const traceparent = formatTraceparent(c);
  if (!TRACEPARENT.test(traceparent) || c.traceId === ZERO_TRACE || c.spanId === ZERO_SPAN) return undefined;
  let state: unknown;
  try {
    state = c.traceState?.serialize();
  } catch {
    state = undefined;
  }
  return [traceparent, typeof state === 'string' && state.length <= MAX_TRACESTATE ? state : ''];
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
  const a = otelApi();
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
    return openInScope(this, open);
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

/** A Redis session's scope, if a tracer provider is registered (else undefined: one property read). */
export function sessionScope(): SessionScope | undefined {
  const found = traced();
  return found === undefined ? undefined : new SessionScope(found[0], found[1]);
}
