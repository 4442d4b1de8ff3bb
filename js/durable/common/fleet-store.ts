// The seam between the dashboard's fleet view (integrations/dashboard-fleet.ts) and a backend: where each member's
// latest sample meets the others'. A store keeps one value per member id that lives `ttl` ms after its last publish
// by the SERVER's clock (a member's own clock never decides whether it is shown); the view, its checks and its
// sums are the dashboard's. Redis (redis/clients/fleet-store.ts) and Postgres (postgres/clients/fleet-store.ts)
// implement it; integrations/dashboard-fleet-store.ts picks one by the client it is given.

/** A member's stored value as read: any value (a row or key written by something else may hold anything). */
export interface FleetRow {
  readonly id: string;
  readonly value: unknown;
}

/** One fleet's storage on a backend. */
export interface FleetStore {
  /** The server, as messages name it ('Redis', 'Postgres'). */
  readonly server: string;
  /** Writes `value` as member `id`'s latest, living `ttl` ms from now by the server's clock. */
  publish(id: string, value: string, ttl: number): Promise<void>;
  /** The members whose value has not expired, by id order, at most `max` (a reader may delete expired ones, a bounded number). */
  read(max: number): Promise<FleetRow[]>;
  /** Forgets members a read found unreadable (a member that publishes again comes back). */
  remove(ids: readonly string[]): Promise<void>;
  /** Removes member `id` (it leaves the fleet). */
  leave(id: string): Promise<void>;
}
