// Per-user fraud scoring behind POST /events: one session (one stream) per
// user, kept across requests, ended when the user goes quiet; scores stream
// out of the merged session output; /metrics serves Prometheus metrics.
//
//   node examples/sessions-fraud.mjs            # listens on 127.0.0.1:3003
//   curl -XPOST 127.0.0.1:3003/events -d '{"user":"u1","tx":{"id":"t1","amount":20,"country":"DE","at":0}}'
import express from 'express';
import { Registry } from 'prom-client';
import { pathToFileURL } from 'node:url';
import { registerStreamMetrics } from 'velo-stream/prometheus';
import { fraudScorer } from './fraud-scoring.mjs';

export function createApp({ idleTimeout = 15 * 60_000, maxConcurrent = 10_000 } = {}) {
  const sessions = fraudScorer.sessions({ idleTimeout, maxConcurrent });
  const flagged = [];
  // The merged output of every user's session: keep what needs review.
  const reviewing = (async () => {
    for await (const item of sessions) {
      if ('error' in item) console.error(`session ${item.key} failed:`, item.error);
      else if (item.value.flagged) flagged.push({ user: item.key, ...item.value });
    }
  })();

  const registry = new Registry();
  // The sessions run on their own copy of the function (their own limits): register that one.
  registerStreamMetrics(registry, [sessions.fn]);

  const app = express();
  app.use(express.json());
  app.post('/events', async (req, res) => {
    const { user, tx } = req.body ?? {};
    if (typeof user !== 'string' || typeof tx !== 'object' || tx === null) {
      return res.status(400).json({ error: { message: 'expected {"user": string, "tx": object}' } });
    }
    try {
      await sessions.send(user, tx);
      res.status(202).json({ accepted: true, sessions: sessions.size });
    } catch (error) {
      const status = error.code === 'ERR_VELO_STREAM_LIMIT' ? 429 : 503;
      res.status(status).json({ error: { message: error.message, code: error.code } });
    }
  });
  app.get('/flagged', (_req, res) => res.json(flagged));
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', registry.contentType);
    res.end(await registry.metrics());
  });
  return { app, sessions, flagged, reviewing };
}

export function start(port = 3003, opts) {
  const { app, sessions, flagged } = createApp(opts);
  return new Promise((resolve) => {
    const server = app.listen(port, '127.0.0.1', () => {
      resolve({
        server,
        sessions,
        flagged,
        url: `http://127.0.0.1:${server.address().port}`,
        close: async () => {
          await Promise.all([sessions.close(), new Promise((r) => server.close(r) && server.closeAllConnections())]);
        },
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { url } = await start(Number(process.env.PORT ?? 3003));
  console.log(`POST ${url}/events, GET ${url}/flagged, GET ${url}/metrics`);
}
