// The Lua scripts velo-stream/redis runs, each in its own file under lua/ (copied beside the compiled module by
// the build), read once when this module loads and sent by SHA1.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RedisClientLike, send } from './connection';

/** A script of lua/, as its text. */
function lua(file: string): string {
  return readFileSync(join(__dirname, 'lua', file), 'utf8');
}

/** The lease check an owner's scripts start with (lua/fence.lua): refused with VELO_FENCED once the lease is gone. */
const FENCE = lua('fence.lua');

/** A Lua script sent by SHA1 (EVALSHA), loaded with EVAL on NOSCRIPT (a restarted or new server). */
export class Script {
  readonly source: string;
  readonly sha: string;
  /**
   * `fenced`: the script runs after the lease check (its KEYS[1] is the lease, ARGV[1] the owner's token). Several
   * files make one script, in order (the limiter's share a prelude of functions).
   */
  constructor(file: string | readonly string[], fenced = false) {
    const text = typeof file === 'string' ? lua(file) : file.map(lua).join('\n');
    this.source = fenced ? FENCE + text : text;
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }
  async run(client: RedisClientLike, keys: string[], args: ReadonlyArray<string | Buffer>, options?: object): Promise<unknown> {
    try {
      return await send(client, keys[0], ['EVALSHA', this.sha, String(keys.length), ...keys, ...args], options);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
      return send(client, keys[0], ['EVAL', this.source, String(keys.length), ...keys, ...args], options);
    }
  }
}
