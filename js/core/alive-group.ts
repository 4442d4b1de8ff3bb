// Keep-alive for a composition of streams (the stages of a pipe): only a
// read waiting on what the user reads (the last stage) keeps the process
// alive, and it does while some member's idle deadline runs (or its timers
// are pending), since that deadline will end the chain and settle the read.
// The stages' reads of each other are the pipe's own and keep nothing alive:
// a pipe left open after its output was read lets the process exit, as a
// single stream does.
import { holdAlive, releaseAlive } from '../addon/addon';

/** A member's part: whether its clock runs, and (the last stage) whether a read of the user waits on it. */
export interface AliveMember {
  /** Told whether the group keeps the process alive (a worker body holds its stream meanwhile). */
  keepAlive?(on: boolean): void;
}

/** Groups read by the user while a member waits for a limiter's permit: held here (see `AliveGroup.admitting`). */
const readWhileAdmitting = new Set<AliveGroup>();

export class AliveGroup {
  /** Members waiting for a limiter's permit (core/admit.ts), held by the group while it is read. */
  readonly #admitting = new Set<object>();
  #holdingAdmitting = false;

  /** The last stage's reads are its owner's (`kOwnedReads`): they hold no member waiting for its permit. */
  #ownedReads = false;

  /** Members whose idle deadline runs or whose timers are pending. */
  #running = 0;
  /** A read of the user waits on the last stage. */
  #reading = false;
  #holding = false;
  readonly #members: AliveMember[] = [];

  join(member: AliveMember): void {
    this.#members.push(member);
  }

  running(on: boolean): void {
    this.#running += on ? 1 : -1;
    this.#sync();
  }

  reading(on: boolean): void {
    this.#reading = on;
    this.#sync();
    this.#syncAdmitting();
  }

  /**
   * A member waits for a limiter's permit, or no longer does. The limiter holds such a stream only weakly (a
   * dropped one gives up its place in line); while a read of the user waits on the group, the group holds it,
   * and keeps the process alive, as a read keeps a single stream waiting for its permit.
   */
  admitting(member: object, on: boolean): void {
    if (on) this.#admitting.add(member);
    else this.#admitting.delete(member);
    this.#syncAdmitting();
  }

  /** The group's reads are its owner's from now on (see `kOwnedReads` in protocol.ts). */
  ownedReads(): void {
    this.#ownedReads = true;
    this.#syncAdmitting();
  }

  #syncAdmitting(): void {
    const want = this.#reading && !this.#ownedReads && this.#admitting.size > 0;
    if (want === this.#holdingAdmitting) return;
    this.#holdingAdmitting = want;
    if (want) {
      readWhileAdmitting.add(this);
      holdAlive();
    } else {
      readWhileAdmitting.delete(this);
      releaseAlive();
    }
  }

  #sync(): void {
    const want = this.#reading && this.#running > 0;
    if (want === this.#holding) return;
    this.#holding = want;
    if (want) holdAlive();
    else releaseAlive();
    for (const member of this.#members) member.keepAlive?.(want);
  }
}
