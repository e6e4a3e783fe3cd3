// The files a VM definition names, as a list of fields, so a migration can
// translate each between hosts by storage pool. Kernel and initrd are only read
// by qemu: they must already be on the destination. Disk images are written.
import type { VmDefinition } from "../definition/vm-definition.js";

export interface DefinitionFile {
  /** Dotted path of the field in the definition: `boot.kernel`, `disks.0.image`. */
  field: string;
  path: string;
  readOnly: boolean;
}

export function definitionFiles(def: VmDefinition): DefinitionFile[] {
  const out: DefinitionFile[] = [];
  if (def.boot.kernel) out.push({ field: "boot.kernel", path: def.boot.kernel, readOnly: true });
  if (def.boot.initrd) out.push({ field: "boot.initrd", path: def.boot.initrd, readOnly: true });
  def.disks.forEach((d, i) => {
    if (d.image) out.push({ field: `disks.${i}.image`, path: d.image, readOnly: false });
  });
  if (def.cdrom?.image) out.push({ field: "cdrom.image", path: def.cdrom.image, readOnly: true });
  return out;
}

/** A copy of the definition with each listed field set to a new path. */
export function withFilePaths(def: VmDefinition, paths: Record<string, string>): VmDefinition {
  const copy = structuredClone(def);
  for (const [field, p] of Object.entries(paths)) {
    if (field === "boot.kernel") copy.boot.kernel = p;
    else if (field === "boot.initrd") copy.boot.initrd = p;
    else if (field === "cdrom.image" && copy.cdrom) copy.cdrom.image = p;
    else {
      const m = /^disks\.(\d+)\.image$/.exec(field);
      const disk = m ? copy.disks[Number(m[1])] : undefined;
      if (disk) disk.image = p;
    }
  }
  return copy;
}
