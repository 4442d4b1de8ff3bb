// The log contract (helpers/log-contract.mjs) on the Postgres log, held to the Redis log and the in-memory one:
// each scenario runs on all three (a private redis-server and a private postgres), and the Postgres log's record
// must be the Redis log's.
import { contractTests, memorySide, postgresSide, redisSide } from './helpers/log-contract.mjs';
import { useRedis } from './helpers/redis-suite.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

useRedis();
usePostgres();
contractTests([redisSide, memorySide, postgresSide(pool)]);
