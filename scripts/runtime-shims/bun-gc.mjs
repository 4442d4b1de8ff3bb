// Preloaded by scripts/test-runtime.mjs under Bun: the tests call `global.gc()`
// (Node's --expose-gc), which Bun has as Bun.gc(true), a synchronous full collection.
if (typeof globalThis.gc !== 'function' && typeof Bun !== 'undefined') globalThis.gc = () => Bun.gc(true);
