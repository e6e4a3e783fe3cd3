// Where each VM of an evacuation goes, as pure functions of figures: the VMs to
// move (largest first, so a big one is not left without room by small ones) each
// go to the destination with the most room left, counting what this evacuation
// already sends there; a VM that cannot move is listed with why. And which VMs
// start migrating next, N at a time.

/** A VM with a qemu on this host, as the evacuation sees it. */
export interface VmToPlace {
  name: string;
  memoryMiB: number;
  /** Why it cannot be migrated at all (paused, local-only disks, ...); absent if it can. */
  unmovable?: string;
}

/** A host VMs may go to, with the memory it has for incoming VMs. */
export interface Destination {
  /** Its fleet host id, or its URL outside fleet mode. */
  id: string;
  url: string;
  /** Memory it can take: its available memory less what it keeps for itself. */
  roomMiB: number;
}

export type ItemState = "pending" | "migrating" | "done" | "failed" | "skipped";

/** One VM's line in the evacuation. */
export interface EvacuationItem {
  vm: string;
  memoryMiB: number;
  state: ItemState;
  /** The destination's id and URL (chosen at planning). */
  destination?: string;
  url?: string;
  /** Why it failed or was skipped. */
  reason?: string;
  /** The VM's own migration job, once started. */
  job?: string;
}

export function placeVms(vms: VmToPlace[], destinations: Destination[]): EvacuationItem[] {
  const room = new Map(destinations.map((d) => [d.id, d.roomMiB]));
  const ordered = [...vms].sort((a, b) => b.memoryMiB - a.memoryMiB || a.name.localeCompare(b.name));
  return ordered.map((vm): EvacuationItem => {
    const base = { vm: vm.name, memoryMiB: vm.memoryMiB };
    if (vm.unmovable) return { ...base, state: "skipped", reason: vm.unmovable };
    if (destinations.length === 0) return { ...base, state: "skipped", reason: "no destination host to send it to" };
    // Most room first; ties go to the first listed, so the plan is the same for the same figures.
    let best: Destination | undefined;
    for (const d of destinations) if (!best || room.get(d.id)! > room.get(best.id)!) best = d;
    const left = room.get(best!.id)!;
    if (left < vm.memoryMiB) {
      return { ...base, state: "skipped", reason: `no destination has room: it needs ${vm.memoryMiB} MiB, the most any has left is ${left} MiB (${best!.id})` };
    }
    room.set(best!.id, left - vm.memoryMiB);
    return { ...base, state: "pending", destination: best!.id, url: best!.url };
  });
}

/** The pending VMs to start migrating now, so that at most `parallel` migrate at once. */
export function nextToMigrate(items: readonly EvacuationItem[], parallel: number): EvacuationItem[] {
  const busy = items.filter((i) => i.state === "migrating").length;
  return items.filter((i) => i.state === "pending").slice(0, Math.max(0, parallel - busy));
}

export type ItemCounts = Record<ItemState, number> & { total: number };

export function countItems(items: readonly EvacuationItem[]): ItemCounts {
  const c: ItemCounts = { total: items.length, pending: 0, migrating: 0, done: 0, failed: 0, skipped: 0 };
  for (const i of items) c[i.state]++;
  return c;
}

/** How the evacuation ended: every VM moved, or some stay here (each with why). */
export function evacuationOutcome(items: readonly EvacuationItem[]): "succeeded" | "incomplete" {
  return items.every((i) => i.state === "done") ? "succeeded" : "incomplete";
}
