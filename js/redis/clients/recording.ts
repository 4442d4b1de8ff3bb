// The recording format and its checks live in common/recording.ts (shared with the Postgres export); this file
// keeps the path the Redis clients and the testing kit import them by.
export * from '../common/recording';
