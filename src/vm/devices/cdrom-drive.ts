// A VM's CD-ROM drive in a running qemu: what it holds, and changing or ejecting
// its disc through QMP. The new disc is opened as a block node of its own before
// the old one is touched, so a file qemu cannot open leaves the drive as it was;
// the tray is then opened (forced: a guest that locked it is not asked), the old
// disc removed, the new one inserted and the tray closed, which the guest sees as
// a media change. The old disc's node is deleted, which closes its file.
import { randomBytes } from "node:crypto";
import { CDROM_DEVICE_ID, CDROM_START_NODE, cdromNode } from "../../qemu/cdrom-firmware-plan.js";
import type { BlockInfo } from "../../qmp/removable-media-commands.js";
import type { QemuSession } from "../qemu-session.js";
import type { Vm } from "../vm.js";

/** Opening an image and draining the drive may wait on storage. */
const MEDIUM_TIMEOUT_MS = 30_000;
const QUERY_TIMEOUT_MS = 5_000;

export interface CdromStatus {
  /** Whether the VM has a CD-ROM drive: in its running qemu, or when stopped in its definition. */
  drive: boolean;
  /** The ISO the definition names: what the drive holds from the next start. */
  image: string | null;
  /** What qemu's drive holds right now; present while qemu runs and has a drive. */
  live?: { medium: string | null; trayOpen: boolean; locked: boolean };
}

/** Nodes the daemon made for discs (at start, or by a change), which it may delete. */
const OUR_NODE = new RegExp(`^(${CDROM_START_NODE}|cd-[0-9a-f]{8})$`);

/** The drive as qemu reports it, or undefined when this qemu has none. */
export async function queryCdrom(session: QemuSession): Promise<BlockInfo | undefined> {
  const blocks = await session.execute("query-block", undefined, QUERY_TIMEOUT_MS);
  // qdev is the device's id when it has one, else its QOM path.
  return blocks.find((b) => b.qdev === CDROM_DEVICE_ID || b.qdev === `/machine/peripheral/${CDROM_DEVICE_ID}`);
}

export async function cdromStatus(vm: Vm): Promise<CdromStatus> {
  const image = vm.definition.cdrom?.image ?? null;
  if (!vm.session?.connected) return { drive: vm.definition.cdrom !== undefined, image };
  const drive = await queryCdrom(vm.session);
  if (!drive) return { drive: false, image };
  return {
    drive: true,
    image,
    live: { medium: drive.inserted?.file ?? null, trayOpen: drive.tray_open ?? false, locked: drive.locked },
  };
}

/**
 * Puts `file` (an absolute path) into the drive, or empties it when `file` is
 * undefined; the tray is closed afterwards either way. Resolves with the file
 * the drive held before (for an undo). On failure the old disc is put back.
 */
export async function changeMedium(session: QemuSession, file: string | undefined): Promise<string | undefined> {
  const drive = await queryCdrom(session);
  if (!drive) throw new Error(`qemu has no ${CDROM_DEVICE_ID} drive`);
  const oldNode = drive.inserted?.["node-name"];
  const id = CDROM_DEVICE_ID;
  const newNode = file ? `cd-${randomBytes(4).toString("hex")}` : undefined;
  if (file && newNode) await session.execute("blockdev-add", cdromNode(newNode, file), MEDIUM_TIMEOUT_MS);
  try {
    await session.execute("blockdev-open-tray", { id, force: true }, MEDIUM_TIMEOUT_MS);
    if (drive.inserted) await session.execute("blockdev-remove-medium", { id }, MEDIUM_TIMEOUT_MS);
    if (newNode) await session.execute("blockdev-insert-medium", { id, "node-name": newNode }, MEDIUM_TIMEOUT_MS);
    await session.execute("blockdev-close-tray", { id }, MEDIUM_TIMEOUT_MS);
  } catch (err) {
    await restore(session, oldNode, newNode);
    throw err;
  }
  if (oldNode && OUR_NODE.test(oldNode)) {
    await session.execute("blockdev-del", { "node-name": oldNode }, MEDIUM_TIMEOUT_MS).catch(() => {
      // Still open, but out of the drive: harmless until qemu ends.
    });
  }
  return drive.inserted?.file;
}

/** Best effort after a failed change: the old disc back in, the new node gone. */
async function restore(session: QemuSession, oldNode: string | undefined, newNode: string | undefined): Promise<void> {
  const id = CDROM_DEVICE_ID;
  const quietly = (p: Promise<unknown>): Promise<unknown> => p.catch(() => undefined);
  await quietly(session.execute("blockdev-open-tray", { id, force: true }, MEDIUM_TIMEOUT_MS));
  await quietly(session.execute("blockdev-remove-medium", { id }, MEDIUM_TIMEOUT_MS));
  if (oldNode) await quietly(session.execute("blockdev-insert-medium", { id, "node-name": oldNode }, MEDIUM_TIMEOUT_MS));
  await quietly(session.execute("blockdev-close-tray", { id }, MEDIUM_TIMEOUT_MS));
  if (newNode) await quietly(session.execute("blockdev-del", { "node-name": newNode }, MEDIUM_TIMEOUT_MS));
}
