// Public types of velo-stream. The declarations are generated from the
// TypeScript sources in js/ (see js/types.ts for the documented interfaces).
export * from './dist/index';
