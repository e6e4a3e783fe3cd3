// The plan's CD-ROM drives and UEFI firmware, beside machine-plan.ts (which
// calls them): block nodes and the devices on them.
import type { VmDefinition } from "../definition/vm-definition.js";
import type { FormatNode, MachineFiles, PlanEntry } from "./plan-types.js";

export const FW_CODE_NODE = "fw-code";
export const FW_VARS_NODE = "fw-vars";

/**
 * OVMF as the machine's two flash devices, opened as block nodes (not the
 * legacy `-drive if=pflash`): CODE read-only and shared, VARS the VM's own.
 */
export function firmwareEntries(def: VmDefinition, files: MachineFiles): PlanEntry[] {
  if (def.firmware !== "uefi") return [];
  if (!files.firmware) throw new Error("no resolved UEFI firmware");
  const { code, vars } = files.firmware;
  return [
    { kind: "blockdev", node: { driver: "file", "node-name": `${FW_CODE_NODE}-file`, filename: code, "read-only": true } },
    { kind: "blockdev", node: { driver: "raw", "node-name": FW_CODE_NODE, file: `${FW_CODE_NODE}-file`, "read-only": true } },
    { kind: "blockdev", node: { driver: "file", "node-name": `${FW_VARS_NODE}-file`, filename: vars, "read-only": false } },
    { kind: "blockdev", node: { driver: "raw", "node-name": FW_VARS_NODE, file: `${FW_VARS_NODE}-file`, "read-only": false } },
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
export function cdromEntries(def: VmDefinition, files: MachineFiles): PlanEntry[] {
  if (!def.cdrom) return [];
  const out: PlanEntry[] = [];
  if (files.cdrom) out.push({ kind: "blockdev", node: cdromNode(CDROM_START_NODE, files.cdrom) });
  const order = def.boot.kernel ? [] : (def.boot.order ?? ["disk"]);
  const pos = order.indexOf("cdrom");
  out.push({
    kind: "device",
    device: {
      driver: "ide-cd",
      id: CDROM_DEVICE_ID,
      bus: "ide.0",
      ...(files.cdrom ? { drive: CDROM_START_NODE } : {}),
      // As disks (diskBootIndex in plan-devices.ts): 100 per place in the boot order.
      ...(pos >= 0 ? { bootindex: pos * 100 + 1 } : {}),
    },
  });
  return out;
}

/** The cloud-init seed's drive: a read-only CD-ROM of its own, never booted from. */
export const CLOUD_INIT_DEVICE_ID = "cidata0";
const CLOUD_INIT_NODE = "cidata";

/**
 * On virtio-scsi rather than beside the installer's drive on the SATA/IDE bus:
 * cloud images often run kernels built for virtio only (Debian's cloud kernel
 * has no AHCI driver), and every Linux with virtio has virtio-scsi. Its root
 * port (from `port`) comes before the seed's block node.
 */
export function cloudInitEntries(def: VmDefinition, seed: string, port: () => string | undefined): PlanEntry[] {
  if (!def.cloudInit) return [];
  const bus = port();
  return [
    { kind: "blockdev", node: cdromNode(CLOUD_INIT_NODE, seed) },
    { kind: "device", device: { driver: "virtio-scsi-pci", id: "cidata-scsi", ...(bus ? { bus } : {}) } },
    { kind: "device", device: { driver: "scsi-cd", id: CLOUD_INIT_DEVICE_ID, bus: "cidata-scsi.0", drive: CLOUD_INIT_NODE } },
  ];
}

/**
 * A read-only ISO medium: the blockdev-add arguments, also used for a live change.
 * Always opened raw, so a disc whose first bytes look like a qcow2 header is only
 * bytes to the guest; no format is read from it.
 */
export function cdromNode(nodeName: string, image: string): FormatNode {
  return {
    driver: "raw",
    "node-name": nodeName,
    "read-only": true,
    file: { driver: "file", filename: image, "read-only": true },
  };
}
