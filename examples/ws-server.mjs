// ws: one stream per WebSocket connection. Each message is an event (a sensor
// reading); the rolling-window function's alerts go back on the same socket.
// Closing the socket cancels the stream; a quiet socket ends by idle timeout.
//
//   node examples/ws-server.mjs                 # listens on 127.0.0.1:3002
import { WebSocketServer } from 'ws';
import { pathToFileURL } from 'node:url';
import { rollingWindow } from './iot-rolling-window.mjs';

export function start(port = 3002) {
  return new Promise((resolve) => {
    const wss = new WebSocketServer({ port, host: '127.0.0.1' }, () => {
      resolve({ wss, url: `ws://127.0.0.1:${wss.address().port}`, close: () => new Promise((r) => wss.close(r)) });
    });
    wss.on('connection', (socket) => {
      const stream = rollingWindow.open();
      socket.on('message', (data) => {
        let reading;
        try {
          reading = JSON.parse(String(data));
        } catch {
          socket.send(JSON.stringify({ error: 'not JSON' }));
          return;
        }
        // Backpressure: a full stream pauses reading from the socket.
        const sent = stream.send(reading);
        socket.pause();
        sent.then(() => socket.resume(), () => socket.close(1011, 'stream closed'));
      });
      socket.on('close', () => void stream.cancel('socket closed'));
      (async () => {
        for await (const alert of stream) {
          if (socket.readyState !== socket.OPEN) break;
          socket.send(JSON.stringify(alert));
        }
        if (socket.readyState === socket.OPEN) socket.close(1000, 'stream ended');
      })().catch(() => socket.terminate());
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { url } = await start(Number(process.env.PORT ?? 3002));
  console.log(`connect to ${url} and send {"t":1,"celsius":90}`);
}
