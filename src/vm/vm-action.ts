// Every request to change a VM's run state, as one typed action. Routes, the CLI
// and the daemon's own recovery produce these; VmRegistry.perform carries them out.
import type { JournalEntry } from "../store/operation-journal.js";
import type { CloudInit, DiskDefinition, NicDefinition } from "../definition/vm-definition.js";

export type VmAction =
  | { kind: "start" }
  | { kind: "shutdown"; timeoutSec?: number }
  | { kind: "stop" }
  | { kind: "reset" }
  | { kind: "pause" }
  | { kind: "resume" }
  /** Put this ISO (a path in a pool) into the CD-ROM drive, replacing any disc. */
  | { kind: "change-cdrom"; image: string }
  | { kind: "eject-cdrom" }
  /** Grow one of the VM's own disks to this size (at once if it runs). */
  | { kind: "resize-disk"; disk: string; sizeGiB: number }
  /** Hot-plug (running) or add to the definition (stopped) a disk or NIC; remove one. */
  | { kind: "add-disk"; disk: DiskDefinition }
  | { kind: "remove-disk"; disk: string; timeoutSec?: number }
  | { kind: "add-nic"; nic: Omit<NicDefinition, "mac"> & { mac?: string } }
  /** `nic`: its index in the definition or its MAC. */
  | { kind: "remove-nic"; nic: string; timeoutSec?: number }
  | { kind: "set-balloon"; targetMiB: number }
  /** Replace (or with undefined remove) the cloud-init seed's content; the next start attaches it. */
  | { kind: "set-cloud-init"; cloudInit: CloudInit | undefined }
  /** After a daemon restart: settle a device change it cut short (from its journal entry). */
  | { kind: "recover-hotplug"; entry: JournalEntry };
