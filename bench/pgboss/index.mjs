// pg-boss as installed here (npm install --prefix bench/pgboss), for bench/postgres-vs-pgboss.mjs.
export { PgBoss } from 'pg-boss';
