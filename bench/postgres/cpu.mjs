// CPU of processes on this machine, from /proc: the benches' server CPU per event (bench/postgres.mjs,
// bench/postgres-vs-pgboss.mjs).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** utime + stime (+ cutime + cstime: children waited for) of a process, ms; 0 if it is gone. */
export function cpuOf(pid, children = false) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0)) * TICK_MS;
  } catch {
    return 0;
  }
}

/** A server's CPU so far, ms: redis-server's own; postgres' postmaster, its live backends and the exited ones. */
export function serverCpu(pid) {
  let ms = cpuOf(pid, true);
  let kids = '';
  try {
    kids = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  } catch {}
  for (const kid of kids.split('\n').filter(Boolean)) ms += cpuOf(Number(kid));
  return ms;
}
