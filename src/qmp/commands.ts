// TypeScript shapes of the QMP messages and commands vmhostd uses, written from
// qemu's qapi schema (qapi/control.json, run-state.json, misc.json, machine.json)
// as qemu 7.2 reports it through query-qmp-schema. Only what we call is typed;
// anything else goes through QmpClient.executeRaw. Optional members are ones the
// schema marks optional or that newer/older qemus add or drop.

import type { MigrationCommands } from "./migration-commands.js";
import type { RemovableMediaCommands } from "./removable-media-commands.js";
import type { BlockCommands } from "./block-commands.js";
import type { DeviceCommands } from "./device-commands.js";

/** The inner part of qemu's greeting, `{"QMP": {version, capabilities}}`. */
export interface QmpGreeting {
  version: VersionInfo;
  /** Capabilities qemu offers (7.2 offers only "oob"); we enable none of them. */
  capabilities: string[];
}

/** An asynchronous event from qemu (STOP, RESUME, SHUTDOWN, ...). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  /** When qemu emitted it, by the host's wall clock. */
  timestamp: { seconds: number; microseconds: number };
}

/** qemu's RunState enum (qapi/run-state.json). */
export type RunState =
  | "debug"
  | "inmigrate"
  | "internal-error"
  | "io-error"
  | "paused"
  | "postmigrate"
  | "prelaunch"
  | "finish-migrate"
  | "restore-vm"
  | "running"
  | "save-vm"
  | "shutdown"
  | "suspended"
  | "watchdog"
  | "guest-panicked"
  | "colo";

export type StatusInfo = {
  status: RunState;
  running: boolean;
  /** Deprecated in qemu 8.1 and later removed; present on 7.2. */
  singlestep?: boolean;
};

export type VersionTriple = { major: number; minor: number; micro: number };

export type VersionInfo = {
  qemu: VersionTriple;
  /** Distribution build string, e.g. "Debian 1:7.2+dfsg-7"; may be empty. */
  package: string;
};

export type KvmInfo = { enabled: boolean; present: boolean };

/** `name` is absent when qemu was started without -name. */
export type NameInfo = { name?: string };

/** Where a CPU sits in the topology; which members appear depends on machine type and qemu version. */
export type CpuInstanceProperties = {
  "node-id"?: number;
  "drawer-id"?: number;
  "book-id"?: number;
  "socket-id"?: number;
  "die-id"?: number;
  "cluster-id"?: number;
  "core-id"?: number;
  "thread-id"?: number;
};

export type CpuInfoFast = {
  "cpu-index": number;
  "qom-path": string;
  /** Host thread id (TID) of the vCPU thread: what CPU pinning needs. */
  "thread-id": number;
  props?: CpuInstanceProperties;
  /** qemu's SysEmuTarget ("x86_64", "aarch64", ...); kept as a string since each release adds targets. */
  target: string;
  /** Only on s390x. */
  "cpu-state"?: string;
};


/** A command that takes no arguments; `{}` or nothing may be passed. */
type NoArgs = Record<string, never>;
/** A command whose success reply is `{"return": {}}`. */
type EmptyResult = Record<string, never>;

/** Each command we use: its arguments and what its reply's `return` holds. */
export interface QmpCommands extends MigrationCommands, RemovableMediaCommands, DeviceCommands, BlockCommands {
  qmp_capabilities: { args: { enable?: "oob"[] }; result: EmptyResult };
  "query-status": { args: NoArgs; result: StatusInfo };
  "query-version": { args: NoArgs; result: VersionInfo };
  "query-kvm": { args: NoArgs; result: KvmInfo };
  "query-name": { args: NoArgs; result: NameInfo };
  "query-cpus-fast": { args: NoArgs; result: CpuInfoFast[] };
  cont: { args: NoArgs; result: EmptyResult };
  stop: { args: NoArgs; result: EmptyResult };
  /** Asks the guest to power off (ACPI); the guest may ignore it. */
  system_powerdown: { args: NoArgs; result: EmptyResult };
  system_reset: { args: NoArgs; result: EmptyResult };
  /** Resolves on qemu's reply or on its hang-up, whichever comes first. */
  quit: { args: NoArgs; result: EmptyResult };
  /** Writes the display's current frame to a file qemu opens itself; `format` since qemu 7.1. */
  screendump: {
    args: { filename: string; device?: string; head?: number; format?: "ppm" | "png" };
    result: EmptyResult;
  };
}

export type QmpCommandName = keyof QmpCommands;
