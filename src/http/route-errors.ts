// Which problems a kind of route can answer, for its documented responses. The
// groups follow the layers a request passes through: the listener (token,
// body), the registry (VM lookup, lock, fleet ownership, state disk), qemu.
import {
  BridgeNotFound,
  DeviceExists,
  DeviceNotFound,
  DeviceRemovalPending,
  DeviceRemovalTimeout,
  EtcdUnreachable,
  MigrationOutcomeUnknown,
  FileExists,
  FileNotAccessible,
  FileNotFound,
  FirmwareUnavailable,
  InsufficientMemory,
  InsufficientResources,
  InternalError,
  JobNotFound,
  LimitsFailed,
  MigrationFailed,
  InsecureMigrationRefused,
  NetworkFailed,
  NoFreeHotplugPort,
  NotInFleetMode,
  PathOutsidePool,
  PayloadTooLarge,
  QemuFailed,
  QemuUnresponsive,
  QmpCommandRefused,
  QmpNotAllowed,
  ShuttingDown,
  StateDiskFull,
  StateWriteFailed,
  StorageFailed,
  TooManyClients,
  Unauthorized,
  UnsafeImage,
  UnsupportedMediaType,
  UuidInUse,
  ValidationFailed,
  VmBusy,
  VmExists,
  VmNotFound,
  VmOwnedElsewhere,
  VmStateConflict,
  ConsoleBusy,
  HostInMaintenance,
  SnapshotUnsupported,
  SnapshotsNotMigrated,
} from "../errors.js";

/** Any request: over TCP without the token; anything unforeseen. */
export const anyRequest = [Unauthorized, InternalError] as const;
/** A path parameter or query that fails its schema. */
export const withInput = [...anyRequest, ValidationFailed] as const;
/** A JSON body: invalid, too large, or not JSON. */
export const withBody = [...withInput, PayloadTooLarge, UnsupportedMediaType] as const;
/** A route that names a VM. */
export const onVm = [...withInput, VmNotFound] as const;
/** A change to a VM under its operation lock, recorded in its journal. */
export const vmChange = [
  ...withBody,
  VmNotFound,
  VmStateConflict,
  VmBusy,
  // A resume (or a pass-through `cont`) of a VM whose migration out has an unknown outcome.
  MigrationOutcomeUnknown,
  VmOwnedElsewhere,
  EtcdUnreachable,
  ShuttingDown,
  StateWriteFailed,
  StateDiskFull,
] as const;
/** A command sent to the VM's running qemu. */
export const qemuCommand = [QemuFailed, QemuUnresponsive] as const;
/** A start: files qemu opens, memory admission, firmware, networking. */
export const vmStart = [
  ...vmChange,
  ...qemuCommand,
  PathOutsidePool,
  FileNotFound,
  FileNotAccessible,
  UnsafeImage,
  InsufficientMemory,
  FirmwareUnavailable,
  BridgeNotFound,
  NetworkFailed,
  LimitsFailed,
  StorageFailed,
  HostInMaintenance,
] as const;
/** A definition (create, or a disk, NIC or ISO added to one): its files are checked. */
export const definitionFiles = [PathOutsidePool, FileNotFound, FileNotAccessible, UnsafeImage, StorageFailed] as const;
export const create = [...withBody, ...definitionFiles, VmExists, UuidInUse, FirmwareUnavailable, ShuttingDown, StateWriteFailed, StateDiskFull] as const;
export const deviceAdd = [...vmChange, ...qemuCommand, ...definitionFiles, DeviceExists, NoFreeHotplugPort, BridgeNotFound, NetworkFailed, LimitsFailed] as const;
export const nicFilter = [...vmChange, DeviceNotFound, NetworkFailed] as const;
export const deviceRemove = [...vmChange, ...qemuCommand, DeviceNotFound, DeviceRemovalPending, DeviceRemovalTimeout, NetworkFailed, StorageFailed, SnapshotUnsupported] as const;
export const stream = [...withInput, TooManyClients] as const;
export const consoleSocket = [...stream, VmNotFound, VmStateConflict, ConsoleBusy] as const;
export const qmpPassthrough = [...vmChange, ...qemuCommand, QmpNotAllowed, QmpCommandRefused] as const;
export const job = [...withInput, JobNotFound] as const;
export const migration = [...vmChange, ...qemuCommand, MigrationFailed, InsecureMigrationRefused, InsufficientResources, StorageFailed, SnapshotsNotMigrated] as const;
export const incoming = [...withBody, LimitsFailed, InsecureMigrationRefused, HostInMaintenance, VmExists, UuidInUse, VmStateConflict, VmOwnedElsewhere, EtcdUnreachable, InsufficientResources, InsufficientMemory, ...definitionFiles, StateWriteFailed, StateDiskFull, ShuttingDown, ...qemuCommand] as const;
export const backup = [...vmChange, ...qemuCommand, DeviceNotFound, PathOutsidePool, FileExists, StorageFailed] as const;
export const fleet = [...anyRequest, NotInFleetMode, EtcdUnreachable] as const;
/** Host maintenance: entering it and the evacuation's plan (destinations asked, the record written). */
export const evacuate = [...withBody, HostInMaintenance, EtcdUnreachable, ShuttingDown, StateWriteFailed, StateDiskFull] as const;
export const resumeHost = [...withBody, StateWriteFailed, StateDiskFull] as const;
export const jobCancel = [...withBody, JobNotFound, VmStateConflict] as const;
export const diskResize = [...vmChange, ...qemuCommand, DeviceNotFound, StorageFailed] as const;
export const screenshot = [...onVm, ...qemuCommand, VmStateConflict] as const;
