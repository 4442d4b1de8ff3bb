// A key's partition, and what a key may be: the same for every backend and every process of a function.
import { describe, invalidType, invalidValue, outOfRange } from '../../errors';

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Largest key, UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** 32-bit FNV-1a of the key's UTF-8 bytes: the partition is this mod K, the same in every process. */
export function fnv1a(key: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(key, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** `key` if it is a valid key (a non-empty, well-formed string of at most MAX_KEY_BYTES); else throws. */
export function checkKey(key: unknown): string {
  if (typeof key !== 'string') throw invalidType(`The key must be a string, not ${describe(key)}`);
  if (key.length === 0) throw invalidValue('The key must not be empty');
  // A lone surrogate has no UTF-8 form: it would be written as U+FFFD, and keys that differ only there would
  // share one session.
  if (LONE_SURROGATE.test(key)) throw invalidValue('The key must be well-formed UTF-16 (it has a lone surrogate)');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw outOfRange(`The key is longer than ${MAX_KEY_BYTES} bytes (UTF-8)`);
  return key;
}
