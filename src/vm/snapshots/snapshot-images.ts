// The image files of snapshots: new overlays made (and handed to the VM's qemu
// uid, which writes them), layers merged while the VM is stopped, and files the
// record no longer names removed. Every qemu-img run that opens a chain runs as
// the VM's uid: the headers it follows are the guest's writing.
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { giveToQemu } from "../../qemu/qemu-files.js";
import type { QemuIdentity } from "../../qemu/qemu-user.js";
import { fsyncDir } from "../../store/atomic-file.js";
import type { HostContext } from "../host-context.js";
import type { Vm } from "../vm.js";
import type { Merge, NewOverlay } from "./snapshot-plans.js";
import { backingNameFor, referencedFiles, snapshotsDir, type SnapshotRecord } from "./snapshot-record.js";

export class SnapshotImages {
  constructor(private readonly host: HostContext) {}

  identity(vm: Vm): Promise<QemuIdentity | undefined> {
    return this.host.qemuUsers.identityFor(vm.name);
  }

  /** Makes each overlay (empty, the size of the layer under it) and gives it to the VM's qemu uid. */
  async makeOverlays(vm: Vm, overlays: readonly NewOverlay[]): Promise<void> {
    const dir = snapshotsDir(vm.paths);
    await mkdir(dir, { recursive: true, mode: 0o711 });
    const id = await this.identity(vm);
    for (const o of overlays) {
      const below = path.join(vm.paths.dir, o.below);
      const file = path.join(vm.paths.dir, o.file);
      const { virtualSize } = await this.host.qemuImg.info(below, "qcow2", id);
      // -u: qemu-img does not open the layer below; its name is written relative, so the VM's directory can move.
      await this.host.qemuImg.createOverlay(file, backingNameFor(o.file, o.below), "qcow2", virtualSize);
      if (id) await giveToQemu(file, id, vm.paths.dir);
    }
    await fsyncDir(dir);
  }

  /** Every layer of the VM's chains is its qemu's (a VM never started since has root's files). */
  async giveChains(vm: Vm, record: SnapshotRecord): Promise<QemuIdentity | undefined> {
    const id = await this.identity(vm);
    if (id) for (const chain of Object.values(record.chains)) for (const f of chain) await giveToQemu(path.join(vm.paths.dir, f), id, vm.paths.dir);
    return id;
  }

  /** A merge while no qemu runs: qemu-img commit, then the layer above names the base. */
  async mergeOffline(vm: Vm, m: Merge, id: QemuIdentity | undefined): Promise<void> {
    const top = path.join(vm.paths.dir, m.top);
    // Done already (a merge a restart cut short after it): the top is gone or nothing names it.
    if (!(await exists(top))) return;
    await this.host.qemuImg.commit(top, id);
    if (m.above) await this.host.qemuImg.rebaseUnsafe(path.join(vm.paths.dir, m.above), backingNameFor(m.above, m.base), "qcow2", id);
  }

  /** Removes every snapshot file the record does not name: what an operation cut short made, or what one finished left. */
  async sweep(vm: Vm, record: SnapshotRecord): Promise<string[]> {
    const dir = snapshotsDir(vm.paths);
    const keep = referencedFiles(record);
    const names = await readdir(dir).catch(() => [] as string[]);
    const removed: string[] = [];
    for (const n of names) {
      const rel = `snapshots/${n}`;
      if (keep.has(rel) || !/^[a-z0-9.-]+\.(qcow2|vmstate)$/.test(n)) continue;
      await rm(path.join(dir, n), { force: true });
      removed.push(rel);
    }
    if (removed.length > 0) await fsyncDir(dir);
    return removed;
  }

  /** Bytes a file takes on disk (allocated, not its apparent size). */
  async allocated(vm: Vm, rel: string): Promise<number> {
    const st = await stat(path.join(vm.paths.dir, rel)).catch(() => undefined);
    return st ? st.blocks * 512 : 0;
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
