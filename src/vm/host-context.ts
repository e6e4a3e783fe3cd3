// What operations need from the host: settings, the chosen accelerator, storage,
// the stores and the event bus. Built once in main.ts and passed down.
import type { Logger } from "pino";
import type { Config } from "../config.js";
import type { FleetMember } from "../fleet/fleet-member.js";
import type { EventBus } from "../events/event-bus.js";
import type { Accel } from "../qemu/qemu-argv.js";
import type { QemuUsers } from "../qemu/qemu-user.js";
import type { DefinitionStore } from "../store/definition-store.js";
import type { QemuImg } from "../storage/qemu-img.js";
import type { StoragePools } from "../storage/storage-pools.js";
import type { TlsFiles } from "../tls/tls-files.js";

export interface HostContext {
  config: Config;
  accel: Accel;
  /** qemu can use io_uring here (probed at start): the default `aio` of disks. */
  ioUring?: boolean;
  qemuVersion: string;
  /** Who each VM's qemu runs as (--qemu-user). */
  qemuUsers: QemuUsers;
  pools: StoragePools;
  qemuImg: QemuImg;
  store: DefinitionStore;
  bus: EventBus;
  log: Logger;
  /** Aborted when the daemon begins to exit: long waits give up at a safe point. */
  stopping: AbortController;
  /** Fleet mode (--etcd): the host lease, registry entry and VM owner keys. Absent on a single host. */
  fleet?: FleetMember;
  /** --tls-cert: this host's certificate, key and CA bundle, as last (re)loaded; used towards peers too. */
  tls?: TlsFiles;
}
