// Whether what a VM's view holds of its qemu and host (qemu's status, the limits as
// applied, the balloon) may have changed since it was last read. Those facts change
// only on events: an event from its qemu (STOP, RESUME, BALLOON_CHANGE, ...), an
// operation on the VM (start, set-limits, a hot-plug, adoption), a new qemu. Each
// such event moves the generation on; a read records the generation it began at,
// so an event that lands while a read is under way leaves the result stale, and
// the next reader asks again rather than trusting an answer from before it.

export class FactFreshness {
  private generation = 0;
  /** The generation the last complete read began at. */
  private readAt: number | undefined;

  /** Something that may change the facts happened. */
  changed(): void {
    this.generation++;
  }

  /** A read begins: hand the token to settled() once every fact was answered. */
  begin(): number {
    return this.generation;
  }

  /** The read that began at `token` got every answer. */
  settled(token: number): void {
    this.readAt = token;
  }

  /** Nothing has happened since the last complete read. */
  get fresh(): boolean {
    return this.readAt === this.generation;
  }
}
