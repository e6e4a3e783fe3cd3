// The argv parts for the CD-ROM drive and UEFI firmware, beside qemu-argv.ts
// (which calls them): both block devices given as -blockdev JSON nodes.
import type { VmDefinition } from "../vm/definition.js";
import type { ArgvInputs } from "./qemu-argv.js";

export const FW_CODE_NODE = "fw-code";
export const FW_VARS_NODE = "fw-vars";

/**
 * OVMF as the machine's two flash devices, opened through -blockdev (not the
 * legacy `-drive if=pflash`): CODE read-only and shared, VARS the VM's own.
 */
export function firmwareArgs(def: VmDefinition, files: ArgvInputs["files"]): string[] {
  if (def.firmware !== "uefi") return [];
  if (!files.firmware) throw new Error("no resolved UEFI firmware");
  const { code, vars } = files.firmware;
  return [
    "-blockdev", json({ driver: "file", "node-name": `${FW_CODE_NODE}-file`, filename: code, "read-only": true }),
    "-blockdev", json({ driver: "raw", "node-name": FW_CODE_NODE, file: `${FW_CODE_NODE}-file`, "read-only": true }),
    "-blockdev", json({ driver: "file", "node-name": `${FW_VARS_NODE}-file`, filename: vars, "read-only": false }),
    "-blockdev", json({ driver: "raw", "node-name": FW_VARS_NODE, file: `${FW_VARS_NODE}-file`, "read-only": false }),
  ];
}

/** The CD-ROM drive's qdev id: what QMP's tray and medium commands name. */
export const CDROM_DEVICE_ID = "cdrom0";
/** The medium a VM starts with; media inserted later get node names of their own. */
export const CDROM_START_NODE = "cd0";

/**
 * The CD-ROM drive on the machine's built-in controller (q35: AHCI port 0; pc:
 * IDE primary master), so it takes no PCI slot and firmware boots from it. The
 * medium is one read-only node with its file inline, so removing the medium
 * (blockdev-del of that node) closes the file too.
 */
export function cdromArgs(def: VmDefinition, files: ArgvInputs["files"]): string[] {
  if (!def.cdrom) return [];
  const out: string[] = [];
  if (files.cdrom) out.push("-blockdev", json(cdromNode(CDROM_START_NODE, files.cdrom)));
  const order = def.boot.kernel ? [] : (def.boot.order ?? ["disk"]);
  const pos = order.indexOf("cdrom");
  out.push(
    "-device",
    json({
      driver: "ide-cd",
      id: CDROM_DEVICE_ID,
      bus: "ide.0",
      ...(files.cdrom ? { drive: CDROM_START_NODE } : {}),
      // As disks (diskBootIndex in qemu-argv.ts): 100 per place in the boot order.
      ...(pos >= 0 ? { bootindex: pos * 100 + 1 } : {}),
    }),
  );
  return out;
}

/** The cloud-init seed's drive: a read-only CD-ROM of its own, never booted from. */
export const CLOUD_INIT_DEVICE_ID = "cidata0";
const CLOUD_INIT_NODE = "cidata";

/**
 * On virtio-scsi rather than beside the installer's drive on the SATA/IDE bus:
 * cloud images often run kernels built for virtio only (Debian's cloud kernel
 * has no AHCI driver), and every Linux with virtio has virtio-scsi.
 */
export function cloudInitArgs(def: VmDefinition, seed: string, bus: () => Record<string, string>): string[] {
  if (!def.cloudInit) return [];
  return [
    "-blockdev", json(cdromNode(CLOUD_INIT_NODE, seed)),
    "-device", json({ driver: "virtio-scsi-pci", id: "cidata-scsi", ...bus() }),
    "-device", json({ driver: "scsi-cd", id: CLOUD_INIT_DEVICE_ID, bus: "cidata-scsi.0", drive: CLOUD_INIT_NODE }),
  ];
}

/**
 * A read-only ISO medium: the blockdev-add arguments, also used for a live change.
 * Always opened raw, so a disc whose first bytes look like a qcow2 header is only
 * bytes to the guest; no format is read from it.
 */
export function cdromNode(nodeName: string, image: string): Record<string, unknown> {
  return {
    driver: "raw",
    "node-name": nodeName,
    "read-only": true,
    file: { driver: "file", filename: image, "read-only": true },
  };
}

function json(v: Record<string, unknown>): string {
  return JSON.stringify(v);
}
