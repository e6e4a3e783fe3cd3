// Which QMP commands an operator may send through the pass-through
// (`POST /v1/vms/{name}/qmp`) by default. The pass-through reaches qemu, which
// runs with access to the host's network and the VM's files: a command that
// opens a listener (nbd-server-start, migrate-incoming, chardev-add), a file
// (blockdev-add, screendump, dump-guest-memory), takes a file descriptor
// (getfd, add-fd) or runs the human monitor would let an API caller do through
// qemu what the API itself never allows. So the default is a short allowlist,
// one row per command with the reason it is safe; `--qmp-passthrough=all`
// lifts it for an operator who needs everything.

export const passthroughModes = ["allowlist", "all"] as const;
export type PassthroughMode = (typeof passthroughModes)[number];

export interface AllowedCommand {
  /** A query changes nothing and runs without the VM's operation lock; an action takes it. */
  kind: "query" | "action";
  /** Why the command is safe: it shows only the VM, or acts only on the guest, and opens nothing. */
  why: string;
}

const query = (why: string): AllowedCommand => ({ kind: "query", why });
const action = (why: string): AllowedCommand => ({ kind: "action", why });

/** The allowlist: the README's table is this one. */
export const allowedCommands: Readonly<Record<string, AllowedCommand>> = {
  "query-status": query("the run state the daemon itself reads"),
  "query-name": query("the VM's name"),
  "query-uuid": query("the VM's uuid"),
  "query-version": query("qemu's version, also in the VM view"),
  "query-kvm": query("whether KVM is in use, also in the VM view"),
  "query-commands": query("the commands this qemu knows"),
  "query-block": query("the VM's own drives and the pool files behind them"),
  "query-blockstats": query("I/O counters of the VM's own drives"),
  "query-block-jobs": query("block jobs on the VM's own drives (backups, storage copies)"),
  "query-named-block-nodes": query("the VM's own block graph"),
  "query-cpus-fast": query("the VM's vCPUs and their host thread ids"),
  "query-hotpluggable-cpus": query("the VM's CPU slots"),
  "query-memdev": query("the VM's memory backends"),
  "query-memory-devices": query("the VM's memory devices"),
  "query-memory-size-summary": query("the VM's RAM size"),
  "query-balloon": query("the balloon's current size"),
  "query-pci": query("the VM's PCI devices"),
  "query-chardev": query("the VM's character devices and their sockets in its own run directory"),
  "query-iothreads": query("the VM's I/O threads"),
  "query-mice": query("the guest's pointing devices"),
  "query-vnc": query("the VNC server on the VM's own Unix socket and its clients"),
  "query-migrate": query("the state of a migration"),
  "query-migrate-capabilities": query("migration settings"),
  "query-migrate-parameters": query("migration settings"),
  "query-rx-filter": query("the guest NICs' receive filters (MACs the guest listens on)"),
  "query-acpi-ospm-status": query("the guest's answers to device unplug requests"),
  "send-key": action("keystrokes to the guest's keyboard"),
  "input-send-event": action("keyboard and mouse events to the guest"),
  "inject-nmi": action("an NMI to the guest; whatever it does (a panic) is the guest's own and seen as such"),
  "system_wakeup": action("wakes a guest suspended to RAM; qemu reports the new run state"),
  "system_reset": action("the command the API's reset sends: the guest reboots in place, the daemon's record is unchanged"),
  "stop": action("pauses the vCPUs; the daemon reads `paused` from qemu's event and the API's resume continues it"),
  "set_link": action("a guest NIC's carrier as the guest sees it; the tap and the bridge are untouched"),
};

/**
 * Why a command an operator may well try is refused, for the error message. Any
 * other command outside the allowlist is refused as "not on the allowlist".
 */
const refusals: readonly [RegExp, string][] = [
  [/^cont$/, "it would run a guest the daemon holds paused (an incoming migration, a start not yet verified); use the API's resume"],
  [/^(system_powerdown|quit)$/, "use the API's shutdown or stop: they are journaled and the exit is recorded as the operator's"],
  [/^(migrate|migrate-incoming|migrate-recover|migrate-pause|migrate-continue|migrate-set-|migrate_)/, "migrations are the daemon's (POST .../migrate)"],
  [/^(nbd-server-|block-export-)/, "it opens a network listener serving the VM's disks"],
  [/^human-monitor-command$/, "the human monitor runs any command, unchecked"],
  [/^(chardev-add|chardev-change)$/, "it opens a socket, file or listener on the host"],
  [/^(getfd|add-fd|closefd|remove-fd)$/, "it hands qemu a file descriptor"],
  [/^(screendump|dump-guest-memory|pmemsave|memsave)$/, "it writes a file on the host (GET .../screenshot gives a screenshot)"],
  [/^(blockdev-add|blockdev-create|blockdev-reopen|object-add|netdev_add|device_add|drive-backup|blockdev-backup|drive-mirror|blockdev-mirror|block-commit|block-stream|blockdev-snapshot)/, "it opens files or devices on the host; use the API's disks, NICs and backups"],
  [/^(set_password|expire_password|change-vnc-password)$/, "it changes the VNC server's authentication, which is not the guest's"],
];

export type PassthroughDecision =
  | { allowed: true; takesLock: boolean }
  | { allowed: false; reason: string };

/** Whether `command` may be run in `mode`, and whether it takes the VM's operation lock. */
export function decidePassthrough(command: string, mode: PassthroughMode): PassthroughDecision {
  const row = Object.hasOwn(allowedCommands, command) ? allowedCommands[command] : undefined;
  if (row) return { allowed: true, takesLock: row.kind === "action" };
  // Everything else, with `all`: run under the lock, since it may change anything.
  if (mode === "all") return { allowed: true, takesLock: true };
  const reason = refusals.find(([re]) => re.test(command))?.[1] ?? "it is not on the pass-through allowlist";
  return { allowed: false, reason };
}
