// The log contract (helpers/log-contract.mjs) on the Redis log and the in-memory one: each scenario's record on the
// in-memory log must be the Redis log's (the Postgres log joins them in postgres-log-contract.test.mjs).
import { contractTests, memorySide, redisSide } from './helpers/log-contract.mjs';
import { useRedis } from './helpers/redis-suite.mjs';

useRedis();
contractTests([redisSide, memorySide]);
