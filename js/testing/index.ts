// velo-stream/testing: the tier's testing kit (a test worker on an in-memory log, the simulator, replays and
// recordings) and, per backend, a harness that runs a service's processes against a private server.
export * from '../durable/testing/index';
// An integration test of a service: a private redis-server, the service's processes, an output collector.
export {
  redisService,
  type OutputCollector,
  type RedisService,
  type RedisServiceOptions,
  type ServiceExit,
  type ServiceProcess,
  type ServiceProcessOptions,
} from '../redis/service';
