// create = check every named file → make the VM's directory aside → create its
// own disks there (blank, overlays, imported copies) → write the definition → rename it into place. The rename is
// the commit point: a crash before it leaves nothing, after it a whole VM.
import { diskPath } from "../../store/vm-paths.js";
import type { VmDefinition } from "../../definition/vm-definition.js";
import type { HostContext } from "../host-context.js";
import { resolveVmFiles } from "../vm-files.js";
import { checkBridges } from "../../net/tap-devices.js";
import { ensureUefiVars, findOvmf } from "../devices/uefi-firmware.js";
import { checkDiskSources, makeOwnDisk } from "../devices/disk-sources.js";

export async function createVmOnDisk(def: VmDefinition, host: HostContext): Promise<void> {
  // Every file the definition names must resolve inside a pool: a 400 naming the field otherwise.
  await resolveVmFiles(def, host.pools, host.store.paths(def.name));
  const sources = await checkDiskSources(def, host.pools);
  // A bridge is checked again at each start; here a misspelt name is caught at once.
  await checkBridges(def);
  const ovmf = def.firmware === "uefi" ? await findOvmf(host.config) : undefined;
  await host.store.create(def, async (staging) => {
    // The VM's own UEFI variable store is part of the VM: made with it, deleted with it.
    if (ovmf) await ensureUefiVars(staging.uefiVars, ovmf);
    for (const disk of def.disks) {
      if (disk.image) continue;
      await makeOwnDisk(host.qemuImg, diskPath(staging, disk), disk, sources[disk.name]);
    }
  });
}
