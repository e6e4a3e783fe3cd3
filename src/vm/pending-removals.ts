// The devices a VM's guest was asked to release and has not yet, by qemu id
// (`disk-<name>`, `nic<N>`). Each wait ends by its own abort: the guest let go,
// a new request took its place, or qemu ended and took the device with it.
export class PendingRemovals {
  private readonly waits = new Map<string, AbortController>();

  /** The qemu ids still pending, sorted. */
  list(): string[] {
    return [...this.waits.keys()].sort();
  }

  has(id: string): boolean {
    return this.waits.has(id);
  }

  /** The guest holds on to a device it was asked to release; the signal aborts when that wait ends (qemu gone, or a new request). */
  leave(id: string): AbortSignal {
    const ctrl = new AbortController();
    this.waits.set(id, ctrl);
    return ctrl.signal;
  }

  /** Ends the wait for a device's release: with `reason`, aborting it; given `only`, just if that wait is still the one pending. */
  end(id: string, reason?: string, only?: AbortSignal): void {
    const ctrl = this.waits.get(id);
    if (!ctrl || (only && ctrl.signal !== only)) return;
    if (reason !== undefined) ctrl.abort(reason);
    this.waits.delete(id);
  }

  /** qemu ended: whatever the guest had not yet released went with it. */
  abortAll(): void {
    for (const ctrl of this.waits.values()) ctrl.abort();
    this.waits.clear();
  }
}
