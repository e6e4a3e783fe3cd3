// Every request to change a VM's run state, as one typed action. Routes, the CLI
// and the daemon's own recovery produce these; VmRegistry.perform carries them out.
export type VmAction =
  | { kind: "start" }
  | { kind: "shutdown"; timeoutSec?: number }
  | { kind: "stop" }
  | { kind: "reset" }
  | { kind: "pause" }
  | { kind: "resume" }
  /** Put this ISO (a path in a pool) into the CD-ROM drive, replacing any disc. */
  | { kind: "change-cdrom"; image: string }
  | { kind: "eject-cdrom" };
