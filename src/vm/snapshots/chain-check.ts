// Before a start, a disk with snapshots is checked as a chain: qemu opens the
// layers below the top from the names in their headers, which the VM's qemu uid
// can rewrite, so every header must still name exactly the layer the record
// says, all inside the VM's directory, down to the disk's own base (and below
// it, as for any disk, only pool files). The layers are then the VM's qemu's.
import path from "node:path";
import { realpath } from "node:fs/promises";
import { UnsafeImage } from "../../errors.js";
import { giveToQemu } from "../../qemu/qemu-files.js";
import type { QemuIdentity } from "../../qemu/qemu-user.js";
import { DEFAULT_MAX_CHAIN_DEPTH, ImageInspector } from "../../storage/image-inspector.js";
import type { HostContext } from "../host-context.js";
import type { Vm } from "../vm.js";
import { readSnapshotRecord } from "./snapshot-record.js";

/** An inspector that also lets a chain pass through the VM's own directory, as deep as its snapshots may make it. */
export function chainInspector(vm: Vm, host: HostContext): ImageInspector {
  const own = vm.paths.dir;
  const places = {
    poolOfRealPath: async (real: string): Promise<string | undefined> => {
      const dir = await realpath(own).catch(() => own);
      if (real.startsWith(dir + path.sep)) return "vm";
      return await host.pools.poolOfRealPath(real);
    },
  };
  return new ImageInspector(places, DEFAULT_MAX_CHAIN_DEPTH + host.config.maxSnapshots + 1);
}

export async function checkSnapshotChains(vm: Vm, host: HostContext, id: QemuIdentity | undefined): Promise<void> {
  const record = await readSnapshotRecord(vm.paths);
  const inspector = chainInspector(vm, host);
  for (const [i, disk] of vm.definition.disks.entries()) {
    const chain = record.chains[disk.name];
    if (!chain || disk.image !== undefined) continue;
    const field = `disks.${i}`;
    const top = path.join(vm.paths.dir, chain[chain.length - 1]!);
    const inspected = await inspector.inspect(top, "qcow2", field, `disks.${i}.format`);
    const want = await Promise.all([...chain].reverse().map((f) => realpath(path.join(vm.paths.dir, f)).catch(() => f)));
    want.forEach((file, at) => {
      const got = inspected.chain[at]?.file;
      if (got !== file) throw new UnsafeImage(field, `layer ${at} of disk ${disk.name}'s snapshot chain is ${got ?? "missing"}, not ${file}`);
    });
    if (id) for (const f of chain.slice(0, -1)) await giveToQemu(path.join(vm.paths.dir, f), id, vm.paths.dir);
  }
}
