// The handlers the worker-thread benchmarks run (bench/workers.mjs), loaded by
// velo-stream's workerFn, by the pinned-worker baseline and, one event at a
// time, by the Piscina baseline (tasks.mjs), so every contender runs the same
// code.

/** Running average of numbers (as S1). */
export async function* average(events) {
  let n = 0;
  let sum = 0;
  for await (const e of events) {
    n++;
    sum += e;
    yield sum / n;
  }
}

/** Running average over small objects (as S1o). */
export async function* averageObjects(events) {
  let n = 0;
  let sum = 0;
  for await (const e of events) {
    n++;
    sum += e.value;
    yield { id: e.id, average: sum / n };
  }
}

/** Echoes each event. */
export async function* echo(events) {
  for await (const e of events) yield e;
}

/** The byte length of each event (1 MiB payloads in, a number out). */
export async function* byteLength(events) {
  for await (const e of events) yield e.byteLength;
}

/** RGB (3 bytes a pixel) to 8-bit gray, with integer luma weights (ITU-R BT.601). */
export function toGray(rgb) {
  const gray = new Uint8Array(rgb.length / 3);
  for (let i = 0, j = 0; j < gray.length; i += 3, j++) {
    gray[j] = (rgb[i] * 77 + rgb[i + 1] * 150 + rgb[i + 2] * 29) >> 8;
  }
  return gray;
}

/** Grayscale conversion of each frame (the stream-functions paper's workload), and a motion score against the previous frame (its demo's). */
export async function* grayscale(frames) {
  let previous = null;
  for await (const rgb of frames) {
    const gray = toGray(rgb);
    let motion = 0;
    if (previous !== null) for (let j = 0; j < gray.length; j++) motion += Math.abs(gray[j] - previous[j]) > 24 ? 1 : 0;
    previous = gray;
    yield { gray, motion };
  }
}
