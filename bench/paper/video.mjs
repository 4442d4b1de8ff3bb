// The experiment's video, as in the paper (arXiv:2603.03089): 160x120 RGB
// frames, a repeating series of 20 distinct random frames, each converted to
// grayscale by setting every pixel's R, G and B to their average.
//
// On the wire a frame is a record: u32 index, u32 unused, u64 creation time
// (process.hrtime ns, CLOCK_MONOTONIC: comparable across processes on one
// machine), then the 57,600 pixel bytes.

export const WIDTH = 160;
export const HEIGHT = 120;
export const FRAME_BYTES = WIDTH * HEIGHT * 3;
export const HEADER_BYTES = 16;
export const RECORD_BYTES = HEADER_BYTES + FRAME_BYTES;
export const DISTINCT = 20;

/** Milliseconds on the shared monotonic clock. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** The 20 distinct frames, from a seeded generator (the same on both sides). */
export function makeFrames(seed = 7) {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24);
  return Array.from({ length: DISTINCT }, () => {
    const f = Buffer.allocUnsafe(FRAME_BYTES);
    for (let i = 0; i < FRAME_BYTES; i++) f[i] = next();
    return f;
  });
}

/** Grayscale: every pixel's R, G and B set to their average (rounded down). */
export function grayscale(pixels) {
  const out = Buffer.allocUnsafe(pixels.length);
  for (let p = 0; p < pixels.length; p += 3) {
    const avg = ((pixels[p] + pixels[p + 1] + pixels[p + 2]) / 3) | 0;
    out[p] = avg;
    out[p + 1] = avg;
    out[p + 2] = avg;
  }
  return out;
}

/** A cheap order-sensitive checksum of an output frame. */
export function checksum(buf, index) {
  let h = (index * 2654435761) >>> 0;
  for (let i = 0; i < buf.length; i += 97) h = (Math.imul(h ^ buf[i], 16777619) >>> 0);
  return h;
}

export function encode(index, createdNs, pixels) {
  const rec = Buffer.allocUnsafe(RECORD_BYTES);
  rec.writeUInt32LE(index, 0);
  rec.writeUInt32LE(0, 4);
  rec.writeBigUInt64LE(createdNs, 8);
  pixels.copy(rec, HEADER_BYTES);
  return rec;
}

/** Splits a byte stream into frame records as they complete. */
export async function* records(body) {
  let pending = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= RECORD_BYTES) {
      const rec = pending.subarray(0, RECORD_BYTES);
      pending = pending.subarray(RECORD_BYTES);
      yield {
        index: rec.readUInt32LE(0),
        createdNs: rec.readBigUInt64LE(8),
        pixels: rec.subarray(HEADER_BYTES),
        receivedMs: nowMs(),
      };
    }
  }
  if (pending.length) throw new Error(`truncated frame record (${pending.length} bytes)`);
}
