// Every error velo-stream makes, in one folder: the table of codes (codes.ts: what each means and what to do;
// docs/errors.md is generated from it by scripts/errors-doc.mjs), how each is answered over HTTP (answers.ts), and,
// a file per area, the classes users may test with `instanceof` and a factory for each code that has no class of
// its own. Nothing else in js/ writes a code: __test__/error-codes.test.mjs fails when a file outside this folder
// makes an error with a code, when a code made here is missing from the table, or when the table lists a code
// nothing makes.
//
// This folder imports nothing from outside it: the worker threads, the subpaths and the addon loader all use it.

export * from './codes';
export * from './answers';
export { builtInErrorClass, describe } from './make';
export * from './arguments';
export * from './streams';
export * from './workers';
export * from './http';
export * from './tier';
export * from './backends';
export * from './limiters';
