// A sensor burst: a rolling average over the last readings of one device,
// with an alert when it crosses a threshold (and a clear when it falls back).
//
//   node examples/iot-rolling-window.mjs
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';

export const rollingWindow = streamFn(
  async function* rolling(readings) {
    const window = [];
    let sum = 0;
    let alarm = false;
    for await (const { t, celsius } of readings) {
      window.push(celsius);
      sum += celsius;
      if (window.length > 5) sum -= window.shift();
      const average = sum / window.length;
      if (!alarm && window.length === 5 && average > 80) {
        alarm = true;
        yield { t, event: 'alert', average };
      } else if (alarm && average < 75) {
        alarm = false;
        yield { t, event: 'clear', average };
      }
    }
    yield { event: 'closed', alarm };
  },
  { buffer: 64, idleTimeout: 2_000 },
);

/** A device that heats up from `heatAt` to `coolAt`, then cools down. */
export function* burst({ heatAt = 20, coolAt = 40, length = 60 } = {}) {
  for (let t = 0; t < length; t++) yield { t, celsius: t >= heatAt && t < coolAt ? 95 : 60 };
}

export async function main() {
  const devices = ['boiler-1', 'boiler-2', 'boiler-3'];
  const results = await Promise.all(
    devices.map((id, k) => rollingWindow.run(burst({ heatAt: 10 + k * 10, coolAt: 30 + k * 10 }))),
  );
  devices.forEach((id, k) => console.log(id, JSON.stringify(results[k])));
  return Object.fromEntries(devices.map((id, k) => [id, results[k]]));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
