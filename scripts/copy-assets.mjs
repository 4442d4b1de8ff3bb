// The files of dist/ that tsc does not write (run by `npm run build:ts`): the Redis Lua scripts, the Postgres SQL
// files, the dashboard's page, and uPlot's script, styles and license (a dev dependency, bundled here so the
// dashboard needs no CDN).
import { cpSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(dirname(new URL(import.meta.url).pathname), '..');
cpSync(join(root, 'js/redis/log/lua'), join(root, 'dist/redis/log/lua'), { recursive: true });
cpSync(join(root, 'js/postgres/log/sql'), join(root, 'dist/postgres/log/sql'), { recursive: true });
const page = join(root, 'dist/integrations/dashboard');
cpSync(join(root, 'js/integrations/dashboard'), page, { recursive: true });
const uplot = dirname(require.resolve('uplot/package.json'));
for (const name of ['uPlot.iife.min.js', 'uPlot.min.css']) cpSync(join(uplot, 'dist', name), join(page, name));
cpSync(join(uplot, 'LICENSE'), join(page, 'uPlot.LICENSE'));
