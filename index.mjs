// ESM entry: the CommonJS build, re-exported by name.
import velo from './dist/index.js';

export const { streamFn, task, batch, workerFn, limiter, SourceStalledError, StreamClosedError, StreamLimitError, WorkerCrashedError, ERROR_CODE_ALIASES } =
  velo;
export default velo;
