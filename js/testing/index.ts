// velo-stream/testing: the tier's testing kit (a test worker on an in-memory log, the simulator, replays and
// recordings) and, per backend, a harness that runs a service's processes against a private server.
export * from '../durable/testing/index';
// An integration test of a service: a private server, the service's processes, an output collector. The harness
// is the tier's; each backend starts its own server.
export type { TestService } from '../durable/testing/service-harness';
export type { OutputCollector } from '../durable/testing/service-outputs';
export type { ServiceExit, ServiceProcess, ServiceProcessOptions } from '../durable/testing/service-process';
export { redisService, type RedisService, type RedisServiceOptions } from '../redis/service';
export {
  postgresService,
  type PostgresService,
  type PostgresServiceOptions,
  type PostgresServicePoolOptions,
} from '../postgres/service';
