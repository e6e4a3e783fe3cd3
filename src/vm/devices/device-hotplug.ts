// Plugging virtio disks and NICs into a running qemu and taking them out again,
// over QMP. A device is added backend first (iothread and block nodes, or the
// netdev) and then the device on a free PCIe root port; it is removed device
// first: device_del only asks the guest, which lets go in its own time (Linux's
// pciehp waits 5 s for a cancel), and qemu reports DEVICE_DELETED once it has.
// Only then may the backend be freed. Each device is planned by the same
// function as at start (src/qemu/plan-devices.ts), its QMP commands rendered from
// that plan, so a hot-added device looks exactly like one the VM was started
// with, to qemu and to the next daemon.
import { access } from "node:fs/promises";
import { DeviceRemovalPending, DeviceRemovalTimeout, NoFreeHotplugPort, QemuFailed } from "../../errors.js";
import type { Accel } from "../../qemu/plan-types.js";
import { diskBackendIds, diskDeviceId, nicDeviceId, netdevId, planDisk, planNic } from "../../qemu/plan-devices.js";
import { backendCommands, deviceAddCommand, type BackendCommand } from "../../qemu/plan-qmp.js";
import { runningDeviceIds } from "../../qemu/running-argv.js";
import type { PciDeviceInfo } from "../../qmp/device-commands.js";
import type { QmpEvent } from "../../qmp/commands.js";
import type { VmTap } from "../../net/vm-taps.js";
import { isQ35, type DiskDefinition, type NicDefinition } from "../../definition/vm-definition.js";
import type { QemuSession } from "../qemu-session.js";
import type { Vm } from "../vm.js";

export { diskDeviceId, nicDeviceId };

const ROOT_PORT_ID = /^rp(\d+)$/;

/**
 * Whether the running qemu's disks and NICs differ from those its command line
 * gave it: a device hot-plugged since (on a spare port) or one removed or being
 * removed. A qemu built from the definition would then lay its devices out
 * differently, which a live migration cannot carry over.
 */
export function devicesChangedSinceStart(vm: Vm): boolean {
  // The qemu may be one an older daemon started: what it has is read from its own argv.
  const atStart = new Set(runningDeviceIds(vm.session?.record.argv ?? []).filter((id) => /^(disk-.+|nic\d+)$/.test(id)));
  const now = [...vm.definition.disks.map((d) => diskDeviceId(d.name)), ...vm.definition.nics.map((_, i) => nicDeviceId(i))];
  return vm.removals.list().length > 0 || now.length !== atStart.size || now.some((id) => !atStart.has(id));
}

/** Whether a device of this id is in qemu now (still plugged, or its removal still pending). */
export async function deviceExists(session: QemuSession, id: string): Promise<boolean> {
  const children = await session.execute("qom-list", { path: "/machine/peripheral" });
  return children.some((c) => c.name === id);
}

/**
 * The lowest-numbered PCIe root port with nothing behind it, read from qemu
 * itself (query-pci): the truth after a daemon restart, and a port whose device
 * is still being released counts as taken. Undefined on a machine without root
 * ports (pc), whose bus takes hot-plugged devices directly.
 */
export async function freeRootPort(session: QemuSession, machine: string): Promise<string | undefined> {
  if (!isQ35(machine)) return undefined;
  const buses = await session.execute("query-pci");
  const ports: { id: string; n: number; used: boolean }[] = [];
  const visit = (devs: PciDeviceInfo[]): void => {
    for (const d of devs) {
      const m = ROOT_PORT_ID.exec(d.qdev_id);
      if (m && d.pci_bridge) ports.push({ id: d.qdev_id, n: Number(m[1]), used: (d.pci_bridge.devices ?? []).length > 0 });
      if (d.pci_bridge?.devices) visit(d.pci_bridge.devices);
    }
  };
  for (const b of buses) visit(b.devices);
  const free = ports.filter((p) => !p.used).sort((a, b) => a.n - b.n)[0];
  if (!free) {
    throw new NoFreeHotplugPort(
      `VM "${session.vm}" has no free PCIe root port left (${ports.length} in all); stop it to add the device`,
      { vm: session.vm },
    );
  }
  return free.id;
}

/** Adds the disk's iothread and block nodes, then its virtio-blk device; on failure nothing is left. */
export async function plugDisk(session: QemuSession, machine: string, disk: DiskDefinition, image: string, ioUring: boolean): Promise<void> {
  const part = planDisk(disk, image, { ioUring });
  const made: BackendCommand[] = [];
  try {
    for (const c of backendCommands(part)) {
      await session.execute(c.command, c.args);
      made.push(c);
    }
    const add = deviceAddCommand(part, await freeRootPort(session, machine));
    await session.execute(add.command, add.args);
  } catch (err) {
    if (made.length > 0) await releaseDiskBackend(session, disk.name);
    throw err;
  }
}

/** Frees what plugDisk made below the device; each part that is already gone counts as freed. */
export async function releaseDiskBackend(session: QemuSession, disk: string): Promise<void> {
  const ids = diskBackendIds(disk);
  // Top down: the throttle over the format node, or (a qemu started by an earlier vmhostd) the other way round.
  const throttleFirst = await ignoreMissing(session.execute("blockdev-del", { "node-name": ids.throttleNode })).then(
    () => true,
    () => false,
  );
  await ignoreMissing(session.execute("blockdev-del", { "node-name": ids.formatNode }));
  if (!throttleFirst) await ignoreMissing(session.execute("blockdev-del", { "node-name": ids.throttleNode }));
  await ignoreMissing(session.execute("blockdev-del", { "node-name": ids.fileNode }));
  await ignoreMissing(session.execute("object-del", { id: ids.iothread }));
}

export interface NicPlug {
  index: number;
  nic: NicDefinition;
  /** The tap made for a bridge NIC (already on its bridge). */
  tap?: VmTap;
  accel: Accel;
}

/** Adds the NIC's netdev, then its virtio-net device; on failure the netdev is removed again. */
export async function plugNic(session: QemuSession, machine: string, p: NicPlug): Promise<void> {
  const { index, nic, tap } = p;
  const vhost = tap !== undefined && p.accel === "kvm" && (await access("/dev/vhost-net").then(() => true, () => false));
  const part = planNic(nic, index, tap, vhost);
  for (const c of backendCommands(part)) await session.execute(c.command, c.args);
  try {
    const add = deviceAddCommand(part, await freeRootPort(session, machine));
    await session.execute(add.command, add.args);
  } catch (err) {
    await releaseNicBackend(session, index);
    throw err;
  }
}

export async function releaseNicBackend(session: QemuSession, index: number): Promise<void> {
  await ignoreMissing(session.execute("netdev_del", { id: netdevId(index) }));
}

/**
 * Asks the guest to release device `id` and waits, until `deadlineMs`, for qemu's
 * DEVICE_DELETED. A device already gone is released. A guest that does not let go
 * in time is a DeviceRemovalTimeout: the request stands and the device goes when
 * the guest lets go.
 */
export async function unplugDevice(session: QemuSession, id: string, deadlineMs: number): Promise<void> {
  const stop = new AbortController();
  let released!: () => void;
  const gone = new Promise<void>((resolve) => (released = resolve));
  session.onEvent((e: QmpEvent) => {
    if (e.event === "DEVICE_DELETED" && e.data?.device === id) released();
  }, stop.signal);
  try {
    if (!(await deviceExists(session, id))) return;
    try {
      await session.execute("device_del", { id });
    } catch (err) {
      // qemu refuses a repeated device_del while the guest has not answered the first.
      if (err instanceof QemuFailed && /already in the process of unplug|in progress/i.test(err.message)) {
        throw new DeviceRemovalPending(`the guest has not yet released ${id}; its removal is pending`, { device: id });
      }
      if (err instanceof QemuFailed && /not found/i.test(err.message)) return;
      throw err;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), deadlineMs)));
    const outcome = await Promise.race([gone.then(() => "gone" as const), timedOut, session.gone.then(() => "gone" as const)]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      // The event may have been missed across a QMP reconnect: ask qemu before calling it a timeout.
      if (!(await deviceExists(session, id).catch(() => true))) return;
      throw new DeviceRemovalTimeout(
        `the guest did not release ${id} within ${Math.round(deadlineMs / 1000)} s; its removal stays pending`,
        { device: id },
      );
    }
  } finally {
    stop.abort();
  }
}

/** Waits for DEVICE_DELETED of `id` (or qemu's end), for a removal left pending. */
export function whenReleased(session: QemuSession, id: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    session.onEvent((e) => {
      if (e.event === "DEVICE_DELETED" && e.data?.device === id) resolve();
    }, signal);
    void session.gone.then(() => resolve());
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** For idempotent clean-up: a node, object or netdev that is not there is already freed. */
async function ignoreMissing(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof QemuFailed && /not found|find node|cannot find/i.test(err.message)) return;
    throw err;
  }
}
