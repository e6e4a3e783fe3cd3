// A planned device as QMP commands, for plugging it into a running qemu: the
// objects of the plan are already the commands' arguments (the command line's
// JSON options and QMP share qemu's QAPI types), so nothing is serialised and
// parsed again on the way.
import type { BackendEntry, BlockdevNode, DeviceOptions, DevicePlan, NetdevOptions, ObjectOptions } from "./plan-types.js";

export type BackendCommand =
  | { command: "object-add"; args: ObjectOptions }
  | { command: "blockdev-add"; args: BlockdevNode }
  | { command: "netdev_add"; args: NetdevOptions };

export type DeviceAddCommand = { command: "device_add"; args: DeviceOptions };

/** What the device rests on, in the order it must be made. */
export function backendCommands(part: DevicePlan): BackendCommand[] {
  return part.backends.map(backendCommand);
}

function backendCommand(e: BackendEntry): BackendCommand {
  switch (e.kind) {
    case "object":
      return { command: "object-add", args: e.object };
    case "blockdev":
      return { command: "blockdev-add", args: e.node };
    case "netdev":
      return { command: "netdev_add", args: e.netdev };
  }
}

/** The device itself, on `bus` (a free root port) or where qemu puts it when there is none. */
export function deviceAddCommand(part: DevicePlan, bus: string | undefined): DeviceAddCommand {
  return { command: "device_add", args: bus ? { ...part.device, bus } : part.device };
}
