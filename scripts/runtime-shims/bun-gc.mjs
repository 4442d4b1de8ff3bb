// Preloaded by scripts/test-runtime.mjs under Bun: the tests call `global.gc()`
// (Node's --expose-gc) to collect what the program no longer references.
//
// Bun.gc(true) alone is a synchronous full collection, but it keeps what
// JavaScriptCore's JIT holds for a compilation it has not installed yet: a
// function compiled to be entered at a loop (OSR entry) holds that call's
// `this` and live locals until its code is installed, when that function, or
// any function's tier-up check, runs next. A test that only forces collections
// may run neither for as long as it waits: an abandoned workerFn pipe stream
// stayed uncollected through 200 collections in conformance/gc.test.mjs, and a
// heap snapshot rooted it there (root reason JITWorkList). So `gc()` first asks
// for Bun.shrink() (JavaScriptCore's shrinkFootprintWhenIdle: once the running
// JavaScript returns, it clears the stack's stale words, completes every pending
// compilation and drops the compiled code, then collects), then collects now.
// Neither drops a reference the program holds: what it still references stays.
if (typeof globalThis.gc !== 'function' && typeof Bun !== 'undefined') {
  globalThis.gc = () => {
    Bun.shrink();
    Bun.gc(true);
  };
}
