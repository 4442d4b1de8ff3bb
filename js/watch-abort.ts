// One `'abort'` listener per signal, however many streams and readers share it: a listener each would make Node warn
// of a leak (`MaxListenersExceededWarning`) from the 11th on a shared signal, a request's or a server's.

/** The streams and readers watching each signal. */
const watchers = new WeakMap<AbortSignal, { streams: Set<() => void>; listener: () => void }>();

/**
 * Calls `cancel(signal.reason)` when `signal` aborts, at once if it has.
 * Returns the function that removes the listener (call it when the stream
 * finishes, so a long-lived signal does not hold the stream).
 */
export function watchAbort(signal: AbortSignal, cancel: (reason: unknown) => void): () => void {
  if (signal.aborted) {
    cancel(signal.reason);
    return () => {};
  }
  const onAbort = (): void => cancel(signal.reason);
  let watching = watchers.get(signal);
  if (watching === undefined) {
    const streams = new Set<() => void>();
    const listener = (): void => {
      watchers.delete(signal);
      // (A snapshot: a cancel may detach other watchers while this runs.)
      for (const watcher of [...streams]) watcher();
      streams.clear();
    };
    watching = { streams, listener };
    watchers.set(signal, watching);
    signal.addEventListener('abort', listener, { once: true });
  }
  const { streams, listener } = watching;
  streams.add(onAbort);
  return () => {
    // The last stream on this signal is gone: so is the listener (a long-lived signal holds nothing of them).
    if (!streams.delete(onAbort) || streams.size > 0 || watchers.get(signal)?.streams !== streams) return;
    watchers.delete(signal);
    signal.removeEventListener('abort', listener);
  };
}

/**
 * Resolves after `ms`, or at once when one of `signals` aborts (at once if one has; `undefined` ones are none). Its
 * timer and its watches end with it: a long-lived signal holds nothing of a wait that is over.
 */
export function pause(ms: number, ...signals: (AbortSignal | undefined)[]): Promise<void> {
  return new Promise<void>((resolve) => {
    const unwatch: (() => void)[] = [];
    let over = false;
    const done = (): void => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      for (const stop of unwatch) stop();
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const signal of signals) {
      if (signal === undefined) continue;
      // (An aborted signal ends the wait within watchAbort: no watch is left then.)
      unwatch.push(watchAbort(signal, done));
      if (over) break;
    }
  });
}
