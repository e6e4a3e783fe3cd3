// The error catalogue: one class per failure a user can meet, each with a stable
// code and the HTTP status it maps to. Operators' scripts match on `code`, so a
// code, once published, never changes meaning. Every code is listed in the README
// (a test checks both directions).

export interface ProblemFields {
  /** Request field the problem is about, as a dotted path (`disks.0.sizeGiB`). */
  field?: string;
  [extra: string]: unknown;
}

export abstract class VmhError extends Error {
  abstract readonly code: string;
  abstract readonly status: number;
  readonly fields: ProblemFields;

  constructor(message: string, fields: ProblemFields = {}) {
    super(message);
    this.name = new.target.name;
    this.fields = fields;
  }
}

function defineError(code: string, status: number, title: string) {
  return class extends VmhError {
    static readonly code = code;
    static readonly status = status;
    static readonly title = title;
    readonly code = code;
    readonly status = status;
  };
}

/** A request body, parameter or query that fails validation. */
export class ValidationFailed extends defineError("VMH_ERR_VALIDATION", 400, "Invalid request") {
  constructor(
    message: string,
    readonly issues: { field: string; message: string }[],
  ) {
    super(message, { field: issues[0]?.field, issues });
  }
}

/** A file path (image, kernel, ISO) that does not resolve inside a storage pool. */
export class PathOutsidePool extends defineError("VMH_ERR_PATH_OUTSIDE_POOL", 400, "Path outside storage pools") {}

/** A file path inside a pool that does not exist or is not a regular file. */
export class FileNotFound extends defineError("VMH_ERR_FILE_NOT_FOUND", 400, "File not found") {}

/** A file qemu must open that its unprivileged user cannot reach or read (mode bits of the file or a directory above it). */
export class FileNotAccessible extends defineError("VMH_ERR_FILE_ACCESS", 400, "qemu cannot read the file") {}

/**
 * A pool image that would make qemu open a file the daemon has not allowed: a
 * backing file or data file outside the pools, an unrecorded backing format, a
 * chain too deep or looping, or a writable file with other hard links.
 */
export class UnsafeImage extends defineError("VMH_ERR_UNSAFE_IMAGE", 400, "Unsafe disk image") {
  constructor(field: string, reason: string, extra: Record<string, unknown> = {}) {
    super(`${field}: ${reason}`, { field, reason, ...extra });
  }
}

/** A file the daemon is asked to create (a backup's target) already exists: it is never overwritten. */
export class FileExists extends defineError("VMH_ERR_FILE_EXISTS", 409, "File already exists") {}

export class VmNotFound extends defineError("VMH_ERR_VM_NOT_FOUND", 404, "VM not found") {
  constructor(vm: string) {
    super(`no VM named "${vm}"`, { vm });
  }
}

export class VmExists extends defineError("VMH_ERR_VM_EXISTS", 409, "VM already exists") {
  constructor(vm: string) {
    super(`a VM named "${vm}" already exists`, { vm, field: "name" });
  }
}

/** The operation is not allowed in the VM's current state (e.g. start of a running VM). */
export class VmStateConflict extends defineError("VMH_ERR_VM_STATE", 409, "Operation not allowed in this state") {
  constructor(vm: string, state: string, wanted: string) {
    super(`cannot ${wanted} VM "${vm}": it is ${state}`, { vm, state, wanted });
  }
}

/** Another operation holds the VM's lock and this one chose not to wait. */
export class VmBusy extends defineError("VMH_ERR_VM_BUSY", 409, "VM busy with another operation") {
  constructor(vm: string, operation: string) {
    super(`VM "${vm}" is busy: ${operation} is in progress`, { vm, operation });
  }
}

/** A second viewer asked to type into a serial console that already has a writer. */
export class ConsoleBusy extends defineError("VMH_ERR_CONSOLE_BUSY", 409, "Console already has a writer") {
  constructor(vm: string) {
    super(`the console of VM "${vm}" already has a writer; attach read-only (mode=ro) to watch`, { vm });
  }
}

/** A console ticket that opens nothing: never minted here, minted before a daemon restart, or not a ticket at all. */
export class ConsoleTicketRefused extends defineError("VMH_ERR_CONSOLE_TICKET", 403, "Console ticket not valid") {
  constructor() {
    super("this console link is not valid (never issued, or issued before the daemon restarted): ask the control panel for a new one");
  }
}

/** A console ticket that was valid once: already used to open its session, or expired before it was. */
export class ConsoleTicketSpent extends defineError("VMH_ERR_CONSOLE_TICKET_SPENT", 410, "Console ticket used or expired") {
  constructor(readonly reason: "used" | "expired") {
    super(
      reason === "used"
        ? "this console link was already used to open a console; each link opens one session: ask the control panel for a new one"
        : "this console link expired before it was opened: ask the control panel for a new one",
      { reason },
    );
  }
}

/** A console WebSocket opened from a page whose Origin is neither the console page's own nor a --console-origin. */
export class ConsoleOriginRefused extends defineError("VMH_ERR_CONSOLE_ORIGIN", 403, "Console origin not allowed") {
  constructor(origin: string) {
    super(`a console may not be opened from ${JSON.stringify(origin.slice(0, 200))}: not an origin allowed by --console-origin`, { field: "headers.origin" });
  }
}

export class JobNotFound extends defineError("VMH_ERR_JOB_NOT_FOUND", 404, "Job not found") {
  constructor(job: string) {
    super(`no job with id "${job}"`, { job });
  }
}

/** A request over TCP without the right peer token. */
export class Unauthorized extends defineError("VMH_ERR_UNAUTHORIZED", 401, "Unauthorized") {}

/** The destination of a migration refused it or could not be reached. */
export class MigrationFailed extends defineError("VMH_ERR_MIGRATION", 502, "Migration failed") {}

/**
 * A migration whose guest RAM and disks would cross the network in clear: no
 * --tls-ca on this host (or the other one), an address that is not loopback, and
 * no --insecure-migration. `setting` names what would allow it.
 */
export class InsecureMigrationRefused extends defineError("VMH_ERR_INSECURE_MIGRATION", 409, "Migration in clear refused") {
  constructor(message: string) {
    super(message, { setting: "--insecure-migration", field: "destination" });
  }
}

/**
 * The destination answered with a migration or NBD address that is not its own
 * (the host of the URL the source called): nothing is sent, the guest runs on here.
 */
export class MigrationAddressRefused extends defineError("VMH_ERR_MIGRATION_ADDRESS", 502, "Destination answered with another address") {}

/**
 * The VM's migration out sent all its RAM and its outcome is not known: the copy
 * here stays paused until the destination answers or an operator resolves it.
 */
export class MigrationOutcomeUnknown extends defineError("VMH_ERR_MIGRATION_OUTCOME_UNKNOWN", 409, "Migration outcome unknown") {
  constructor(vm: string, wanted: string) {
    super(`cannot ${wanted} VM "${vm}": its migration's outcome is unknown; it stays paused until the destination answers or POST /v1/vms/${vm}/migration/resolve decides`, {
      vm,
      wanted,
      reason: "outcome-unknown",
    });
  }
}

/** No outcome record of this migration id on this host (never prepared here, or pruned). */
export class MigrationRecordNotFound extends defineError("VMH_ERR_MIGRATION_RECORD_NOT_FOUND", 404, "No such migration record") {
  constructor(id: string) {
    super(`no outcome record of migration "${id}" on this host`, { migration: id });
  }
}

/** The host has not enough free memory for the VM. */
export class InsufficientResources extends defineError("VMH_ERR_INSUFFICIENT_RESOURCES", 507, "Not enough host resources") {}

export class RouteNotFound extends defineError("VMH_ERR_NOT_FOUND", 404, "No such endpoint") {}

export class MethodNotAllowed extends defineError("VMH_ERR_METHOD_NOT_ALLOWED", 405, "Method not allowed") {}

export class PayloadTooLarge extends defineError("VMH_ERR_PAYLOAD_TOO_LARGE", 413, "Request body too large") {}

export class UnsupportedMediaType extends defineError("VMH_ERR_UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported media type") {}

/** qemu did not answer a QMP command in time (hung or SIGSTOPped). */
export class QemuUnresponsive extends defineError("VMH_ERR_QEMU_UNRESPONSIVE", 504, "qemu did not answer") {}

/** qemu refused a command or failed to start; `detail` carries qemu's own words. */
export class QemuFailed extends defineError("VMH_ERR_QEMU_FAILED", 502, "qemu failed") {}

/** qemu answered an operator's pass-through QMP command (`POST .../qmp`) with an error: `qemuClass` and `detail` are qemu's. */
export class QmpCommandRefused extends defineError("VMH_ERR_QMP_COMMAND", 422, "qemu refused the QMP command") {}

/** A pass-through QMP command outside the allowlist (`--qmp-passthrough=allowlist`, the default); `command` names it. */
export class QmpNotAllowed extends defineError("VMH_ERR_QMP_NOT_ALLOWED", 403, "QMP command not allowed") {
  constructor(vm: string, command: string, reason: string) {
    super(`${command} is refused on the QMP pass-through: ${reason}`, { field: "execute", vm, command });
  }
}

/** A create (or an incoming migration) with a uuid another VM on this host already has. */
export class UuidInUse extends defineError("VMH_ERR_UUID_IN_USE", 409, "uuid already in use") {
  constructor(uuid: string, vm: string) {
    super(`uuid ${uuid} is already VM "${vm}"'s on this host`, { field: "uuid", uuid, vm });
  }
}

/** A disk image could not be created or inspected. */
export class StorageFailed extends defineError("VMH_ERR_STORAGE", 500, "Storage operation failed") {}

/** A NIC names a Linux bridge that does not exist on this host (or is not a bridge). */
export class BridgeNotFound extends defineError("VMH_ERR_BRIDGE_NOT_FOUND", 400, "Bridge not found") {}

/** A tap device could not be created, attached or removed (`ip` failed, or the name is taken), or its filter rules could not be installed and verified. */
export class NetworkFailed extends defineError("VMH_ERR_NETWORK", 500, "Network set-up failed") {}

/** A NIC asks for a VLAN (`vlan`, `trunk`) on a host whose kernel has no bridge VLAN filtering. */
export class VlanUnsupported extends defineError("VMH_ERR_VLAN_UNSUPPORTED", 400, "VLANs unsupported on this host") {}
/** A limit could not be applied to the running VM (cgroup, qemu's throttle group or tc refused it); the definition keeps the limits it had. */
export class LimitsFailed extends defineError("VMH_ERR_LIMITS", 409, "Limits not applied") {}

/** UEFI firmware (OVMF) is missing, or its CODE and VARS files do not belong together. */
export class FirmwareUnavailable extends defineError("VMH_ERR_FIRMWARE", 500, "Firmware unavailable") {}

/** No disk or NIC of that name (or index, or MAC) in the VM. */
export class DeviceNotFound extends defineError("VMH_ERR_DEVICE_NOT_FOUND", 404, "Device not found") {}

/** A disk of that name (or a NIC of that MAC) is already in the VM. */
export class DeviceExists extends defineError("VMH_ERR_DEVICE_EXISTS", 409, "Device already exists") {}

/** A running VM has no empty PCIe root port left to plug a device into. */
export class NoFreeHotplugPort extends defineError("VMH_ERR_NO_FREE_PORT", 409, "No free hot-plug port") {}

/** The guest was asked to release a device and has not yet; another removal of it is refused. */
export class DeviceRemovalPending extends defineError("VMH_ERR_REMOVAL_PENDING", 409, "Device removal pending") {}

/** The guest did not release a device in time; the removal stays pending. */
export class DeviceRemovalTimeout extends defineError("VMH_ERR_REMOVAL_TIMEOUT", 504, "Guest did not release the device") {}

/** The daemon cannot record state (state disk read-only or failing: EROFS, EIO). */
export class StateWriteFailed extends defineError("VMH_ERR_STATE_WRITE", 507, "Cannot record state") {}

/** The state disk is full (ENOSPC, EDQUOT): new operations are refused; stop, shutdown and running guests are not. */
export class StateDiskFull extends defineError("VMH_ERR_STATE_DISK_FULL", 507, "State disk full") {}

/** A limit on open streams (console viewers, event streams, unauthenticated TCP connections) is reached. */
export class TooManyClients extends defineError("VMH_ERR_TOO_MANY_CLIENTS", 429, "Too many clients") {}

/** Starting the VM would leave the host less free memory than --reserve-memory. */
export class InsufficientMemory extends defineError("VMH_ERR_INSUFFICIENT_MEMORY", 409, "Not enough free memory") {}

/** The daemon is shutting down and accepts no new operations. */
export class ShuttingDown extends defineError("VMH_ERR_SHUTTING_DOWN", 503, "Daemon shutting down") {}

/** Fleet mode: another host holds the VM's owner key in etcd, so this host may not run it. */
export class VmOwnedElsewhere extends defineError("VMH_ERR_VM_OWNED_ELSEWHERE", 409, "VM owned by another host") {
  constructor(vm: string, owner: string, revision: string) {
    super(`VM "${vm}" is owned by host "${owner}" (revision ${revision})`, { vm, owner, revision });
  }
}

/** A fleet request (hosts, takeover) to a daemon started without --etcd. */
export class NotInFleetMode extends defineError("VMH_ERR_NOT_IN_FLEET", 409, "Not in fleet mode") {
  constructor() {
    super("this daemon runs without --etcd: there is no fleet");
  }
}

/** Fleet mode: etcd cannot be reached, so ownership cannot be taken or checked. */
export class EtcdUnreachable extends defineError("VMH_ERR_ETCD_UNREACHABLE", 503, "etcd unreachable") {}

/** The host is in maintenance (evacuated or being evacuated): it takes no new start and no incoming migration until resumed. */
export class HostInMaintenance extends defineError("VMH_ERR_HOST_IN_MAINTENANCE", 409, "Host in maintenance") {}

/** An evacuation ended with VMs still on this host (each listed in the job with why). */
export class EvacuationIncomplete extends defineError("VMH_ERR_EVACUATION_INCOMPLETE", 409, "Evacuation incomplete") {}

/** A VM has no snapshot of that name. */
export class SnapshotNotFound extends defineError("VMH_ERR_SNAPSHOT_NOT_FOUND", 404, "Snapshot not found") {
  constructor(vm: string, snapshot: string) {
    super(`VM "${vm}" has no snapshot "${snapshot}"`, { vm, snapshot });
  }
}

/** A snapshot name already taken on the VM. */
export class SnapshotExists extends defineError("VMH_ERR_SNAPSHOT_EXISTS", 409, "Snapshot already exists") {
  constructor(vm: string, snapshot: string) {
    super(`VM "${vm}" already has a snapshot "${snapshot}"`, { vm, snapshot, field: "name" });
  }
}

/** The VM already has --max-snapshots snapshots: a deeper chain would slow every read. */
export class TooManySnapshots extends defineError("VMH_ERR_TOO_MANY_SNAPSHOTS", 409, "Too many snapshots") {
  constructor(vm: string, max: number) {
    super(`VM "${vm}" has ${max} snapshots, the most allowed (--max-snapshots); delete one first`, { vm, max });
  }
}

/** A snapshot asked of a VM whose disks cannot have one (an in-place pool image, a raw disk), or a disk with snapshots hot-removed. */
export class SnapshotUnsupported extends defineError("VMH_ERR_SNAPSHOT_UNSUPPORTED", 409, "Snapshot not possible") {}

/**
 * A shared-storage migration of a VM that has snapshots: their layers live in
 * the VM's own directory, which shared storage does not reach; a copy moves them.
 */
export class SnapshotsNotMigrated extends defineError("VMH_ERR_SNAPSHOTS_NOT_MIGRATED", 409, "A VM with snapshots is not migrated with shared storage") {}

/** The disk already has a pull-mode export: one at a time per disk. */
export class ExportExists extends defineError("VMH_ERR_EXPORT_EXISTS", 409, "Disk already exported") {}

/** The disk has no pull-mode export to end. */
export class ExportNotFound extends defineError("VMH_ERR_EXPORT_NOT_FOUND", 404, "Export not found") {}

/** Anything unforeseen; the message is logged in full, the response says little. */
export class InternalError extends defineError("VMH_ERR_INTERNAL", 500, "Internal error") {}

/** Every error class, for the README check and the OpenAPI document. */
export const errorCatalogue = [
  ValidationFailed,
  PathOutsidePool,
  FileNotFound,
  FileNotAccessible,
  FileExists,
  UnsafeImage,
  VmNotFound,
  VmExists,
  VmStateConflict,
  VmBusy,
  ConsoleBusy,
  ConsoleTicketRefused,
  ConsoleTicketSpent,
  ConsoleOriginRefused,
  JobNotFound,
  Unauthorized,
  MigrationFailed,
  InsecureMigrationRefused,
  MigrationAddressRefused,
  InsufficientResources,
  RouteNotFound,
  MethodNotAllowed,
  PayloadTooLarge,
  UnsupportedMediaType,
  QemuUnresponsive,
  QemuFailed,
  QmpCommandRefused,
  QmpNotAllowed,
  UuidInUse,
  StorageFailed,
  FirmwareUnavailable,
  BridgeNotFound,
  NetworkFailed,
  VlanUnsupported,
  LimitsFailed,
  DeviceNotFound,
  DeviceExists,
  NoFreeHotplugPort,
  DeviceRemovalPending,
  DeviceRemovalTimeout,
  StateWriteFailed,
  StateDiskFull,
  TooManyClients,
  InsufficientMemory,
  ShuttingDown,
  VmOwnedElsewhere,
  EtcdUnreachable,
  NotInFleetMode,
  MigrationOutcomeUnknown,
  MigrationRecordNotFound,
  HostInMaintenance,
  EvacuationIncomplete,
  SnapshotNotFound,
  SnapshotExists,
  TooManySnapshots,
  SnapshotUnsupported,
  SnapshotsNotMigrated,
  ExportExists,
  ExportNotFound,
  InternalError,
] as const;
