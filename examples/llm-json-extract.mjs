// Extract JSON objects from an LLM token stream as soon as each one closes,
// however the tokens split it (inside strings, across escapes, nested).
//
//   node examples/llm-json-extract.mjs
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';

export const jsonExtractor = streamFn(
  async function* extract(tokens) {
    let depth = 0;
    let inString = false;
    let escaped = false;
    let current = '';
    for await (const token of tokens) {
      for (const ch of token) {
        if (depth === 0) {
          if (ch === '{') {
            depth = 1;
            current = '{';
          }
          continue;
        }
        current += ch;
        if (inString) {
          if (escaped) escaped = false;
          else if (ch === '\\') escaped = true;
          else if (ch === '"') inString = false;
        } else if (ch === '"') inString = true;
        else if (ch === '{') depth++;
        else if (ch === '}' && --depth === 0) {
          try {
            yield { ok: true, value: JSON.parse(current) };
          } catch (error) {
            yield { ok: false, text: current, error: error.message };
          }
          current = '';
        }
      }
    }
    if (depth > 0) yield { ok: false, text: current, error: 'stream ended inside an object' };
  },
  { buffer: 256, idleTimeout: 30_000 },
);

/** Splits text into token-like chunks of 1-4 characters, deterministically. */
export function* tokenize(text, seed = 7) {
  let i = 0;
  while (i < text.length) {
    seed = (seed * 48271) % 2147483647;
    const n = 1 + (seed % 4);
    yield text.slice(i, i + n);
    i += n;
  }
}

export const SAMPLE =
  'Sure! Here are the results: {"name": "Ada", "tags": ["math", "{braces}"], "quote": "she said \\"hi\\""} ' +
  'and then {"nested": {"depth": 2, "list": [1, {"x": null}]}} and a broken one {"a": tru} done.';

export async function main() {
  const outputs = await jsonExtractor.run(tokenize(SAMPLE));
  for (const o of outputs) console.log(JSON.stringify(o));
  return outputs;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
