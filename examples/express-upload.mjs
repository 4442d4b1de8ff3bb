// Express: an upload endpoint that streams per-frame results back as NDJSON.
// The request body is NDJSON frames; each upload is one stream-function
// instance (motion detection with its own previous frame).
//
//   node examples/express-upload.mjs            # listens on 127.0.0.1:3000
//   curl -N --data-binary @frames.ndjson http://127.0.0.1:3000/upload
import express from 'express';
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';
import { ndjsonEvents, sendError, sendNdjson } from 'velo-stream/http';

/** A frame on the wire: `{ index, pixels }` with pixels as an array of 0-255 values. */
export const motion = streamFn(
  async function* motionOfUpload(frames) {
    let previous;
    for await (const { index, pixels } of frames) {
      if (previous !== undefined) {
        let changed = 0;
        for (let p = 0; p < pixels.length; p++) if (Math.abs(pixels[p] - previous[p]) > 40) changed++;
        yield { frame: index, changed, motion: changed > 0 };
      }
      previous = pixels;
    }
  },
  { buffer: 64, idleTimeout: 10_000, maxConcurrent: 500 },
);

export function createApp() {
  const app = express();
  app.post('/upload', async (req, res) => {
    // The body's frames go in as they arrive, results come out as they are
    // made; a client that leaves cancels the stream; a malformed line before
    // any result is answered 400 with the error object.
    try {
      await sendNdjson(res, motion.open().feed(ndjsonEvents(req)));
    } catch (error) {
      // Past maxConcurrent, open() throws a StreamLimitError: answered 503 now, with Connection: close (Express's
      // own error handler would answer only once the whole upload has arrived).
      sendError(res, error);
    }
  });
  return app;
}

export function start(port = 3000) {
  return new Promise((resolve) => {
    const server = createApp().listen(port, '127.0.0.1', () => {
      const { port: p } = server.address();
      resolve({
        server,
        url: `http://127.0.0.1:${p}`,
        close: () => new Promise((r) => server.close(r) && server.closeAllConnections()),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { url } = await start(Number(process.env.PORT ?? 3000));
  console.log(`POST NDJSON frames to ${url}/upload`);
}
