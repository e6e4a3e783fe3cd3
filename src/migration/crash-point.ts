// Test hook, for the fault tests only (test/migration/outcome-faults.test.ts, test/snapshots/):
// with VMHOSTD_TEST_CRASH_AT=<point> in its environment the daemon SIGKILLs itself
// when a migration reaches that named point, which no outside timing can hit
// reliably. Unset (always, outside those tests) it does nothing. It kills only the
// daemon: qemus run on, as they do when a daemon crashes.
export const crashPoints = [
  /** Destination (fleet mode): the owner key handed over to it, nothing recorded yet. */
  "incoming-key-taken",
  /** Destination: `committed` recorded and `cont` issued, the commit's answer not yet sent. */
  "incoming-committed",
  /** Source: RAM has arrived in full and the guest is paused here; the commit not yet sent. */
  "migrate-switching-over",
  /** Source: the destination answered the commit; the copy here not yet removed. */
  "migrate-committed",
  /** Snapshot: qemu writes the new overlays; the record does not name them yet. */
  "snapshot-switched",
  /** Snapshot delete: the layers are merged in qemu; the record still lists the snapshot. */
  "snapshot-merged",
  /** Disk export: the point-in-time copy is made; no server yet. */
  "export-copied",
  /** Disk export: its qemu-nbd serves; the record does not name it yet. */
  "export-serving",
] as const;
export type CrashPoint = (typeof crashPoints)[number];

export const CRASH_AT_ENV = "VMHOSTD_TEST_CRASH_AT";

export function crashPoint(point: CrashPoint): void {
  if (process.env[CRASH_AT_ENV] === point) process.kill(process.pid, "SIGKILL");
}
