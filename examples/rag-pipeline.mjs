// Retrieval-augmented search, streamed: fetch each candidate document with 8
// calls in flight, re-rank them in batches of 16, and stream the ranked hits
// to the HTTP client as NDJSON while later documents are still being fetched.
//
//   node examples/rag-pipeline.mjs              # listens on 127.0.0.1:3000
//   curl -N -d '{"query":"rust streams","candidates":40}' http://127.0.0.1:3000/search
//
// The document store and the re-ranking model are simulated (deterministic
// latencies and scores), so the example runs anywhere.
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { batch, streamFn, task } from 'velo-stream';
import { sendNdjson } from 'velo-stream/http';

/** Counts calls in flight into the simulated store (the example's test checks the bound). */
export const store = { inFlight: 0, maxInFlight: 0, fetched: 0 };

/** The simulated document store: 1-12 ms per document; every 13th is missing (404). */
async function fetchDocument(id, signal) {
  store.inFlight++;
  store.maxInFlight = Math.max(store.maxInFlight, store.inFlight);
  try {
    await sleep(1 + ((id * 7) % 12), undefined, { signal });
    store.fetched++;
    return id % 13 === 12 ? undefined : { id, text: `document ${id} about ${['rust', 'streams', 'node', 'search'][id % 4]}` };
  } finally {
    store.inFlight--;
  }
}

/** The simulated re-ranker: scores a batch against the query in one call. */
async function rerankModel(query, docs, signal) {
  await sleep(3, undefined, { signal });
  const words = query.split(/\s+/);
  return docs.map((d) => ({ id: d.id, score: words.filter((w) => d.text.includes(w)).length + 1 / (1 + d.id) }));
}

/** One search: candidate ids in, ranked hits out. */
export function searchPipeline(query) {
  const fetchDoc = task((id, ctx) => fetchDocument(id, ctx.signal), {
    concurrency: 8,
    retry: { attempts: 2, delay: 5 },
    name: 'fetch',
  });
  const rerank = batch((docs, ctx) => rerankModel(query, docs, ctx.signal), { maxSize: 16, maxWait: 20, name: 'rerank' });
  // Each batch's hits, best first, numbered across the whole response (a batch holds up to 16 documents,
  // fewer when maxWait passed first).
  const emit = streamFn(async function* rank(batches) {
    let rank = 0;
    let batch = 0;
    for await (const hits of batches) {
      batch++;
      for (const hit of hits.sort((a, b) => b.score - a.score)) yield { rank: ++rank, batch, ...hit };
    }
  });
  return fetchDoc.pipe(rerank).pipe(emit);
}

export function createSearchServer() {
  return createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/search') {
      res.writeHead(404).end();
      return;
    }
    let body = '';
    for await (const chunk of req) {
      body += chunk;
      if (body.length > 10_000) return void res.writeHead(413).end();
    }
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      return void res.writeHead(400).end('bad JSON');
    }
    const { query, candidates } = request;
    if (typeof query !== 'string' || !Number.isInteger(candidates) || candidates < 0 || candidates > 1000) {
      return void res.writeHead(400).end('expected { query: string, candidates: 0..1000 }');
    }
    const ids = Array.from({ length: candidates }, (_, i) => i);
    // A client that disconnects cancels the pipeline: fetches in flight see their signal abort.
    await sendNdjson(res, searchPipeline(query).open().feed(ids));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000);
  const server = createSearchServer().listen(port, '127.0.0.1', () => {
    console.log(`POST http://127.0.0.1:${port}/search  {"query":"rust streams","candidates":40}`);
  });
  if (process.argv.includes('--once')) {
    // For the test: one request against itself, then exit.
    server.on('listening', async () => {
      const r = await fetch(`http://127.0.0.1:${server.address().port}/search`, {
        method: 'POST',
        body: JSON.stringify({ query: 'rust streams', candidates: 40 }),
      });
      const lines = (await r.text()).trim().split('\n');
      console.log(`${lines.length} hits, first ${lines[0]}`);
      server.close();
    });
  }
}
