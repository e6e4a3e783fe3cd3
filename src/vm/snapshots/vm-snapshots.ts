// The snapshot operations of a VM. create: overlays made → (running) opened in
// qemu and switched to in one `transaction` of blockdev-snapshot, atomically for
// every disk → record written. revert (stopped): fresh overlays on the frozen
// images → record written. delete (a job): each disk's layer above the frozen
// image merged down (block-commit live, qemu-img commit stopped) → record
// written. The record is the commit point; files it does not name are swept.
// A daemon killed mid-operation finishes or rolls back from the journal entry
// (recover, below), deciding by what qemu and the files show.
import path from "node:path";
import { SnapshotUnsupported, StorageFailed, VmBusy, VmStateConflict, VmhError } from "../../errors.js";
import type { ActionOf } from "../../definition/vm-action.js";
import type { JobRegistry } from "../../jobs/job-registry.js";
import type { JournalEntry } from "../../store/operation-journal.js";
import type { HostContext } from "../host-context.js";
import type { ActionRun } from "../operations/action-run.js";
import type { PreparedJob } from "../operations/job-actions.js";
import { killQemu } from "../operations/stop-vm.js";
import type { Vm } from "../vm.js";
import { activeNode } from "./block-graph.js";
import { THROTTLE_GROUP_ID } from "../../limits/disk-throttle.js";
import { mergeLive } from "./live-merge.js";
import { SnapshotImages } from "./snapshot-images.js";
import { planCreate, planDelete, planRevert, type NewOverlay } from "./snapshot-plans.js";
import { chainOf, readSnapshotRecord, vmstateName, writeSnapshotRecord, type SnapshotRecord } from "./snapshot-record.js";
import { planDisk } from "../../qemu/plan-devices.js";
import { crashPoint } from "../../migration/crash-point.js";
import { setTimeout as sleep } from "node:timers/promises";
import type { QemuSession } from "../qemu-session.js";
import { resolveVmFiles } from "../vm-files.js";
import { checkDisksBeforeStart } from "../devices/disk-sources.js";
import { launchIncomingQemu } from "../operations/start-vm.js";
import { chainInspector, checkSnapshotChains } from "./chain-check.js";
import { loadMemory, saveMemory } from "./memory-state.js";

const QMP_MS = 30_000;

export interface SnapshotView {
  name: string;
  createdAt: string;
  memory: boolean;
  parent?: string;
  disks: string[];
  /** Bytes the guest has written since the snapshot (the layers above its frozen images), allocated on disk. */
  bytes: number;
}

export class VmSnapshots {
  private readonly images: SnapshotImages;

  constructor(
    private readonly host: HostContext,
    private readonly jobs: JobRegistry,
  ) {
    this.images = new SnapshotImages(host);
  }

  async list(vm: Vm): Promise<SnapshotView[]> {
    const record = await readSnapshotRecord(vm.paths);
    const out: SnapshotView[] = [];
    for (const s of record.snapshots) {
      let bytes = 0;
      for (const [disk, frozen] of Object.entries(s.disks)) {
        const chain = record.chains[disk] ?? [];
        for (const f of chain.slice(chain.indexOf(frozen) + 1)) bytes += await this.images.allocated(vm, f);
      }
      out.push({ name: s.name, createdAt: s.createdAt, memory: s.memory, ...(s.parent ? { parent: s.parent } : {}), disks: Object.keys(s.disks), bytes });
    }
    return out;
  }

  /** Each disk the VM owns with its chain: every disk must be one of its own qcow2 disks. */
  private chains(vm: Vm, record: SnapshotRecord): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const d of vm.definition.disks) {
      if (d.image !== undefined) throw new SnapshotUnsupported(`disk ${d.name} of VM "${vm.name}" is the pool image ${d.image} used in place; only the VM's own disks can have snapshots`, { vm: vm.name, disk: d.name });
      if (d.format !== "qcow2") throw new SnapshotUnsupported(`disk ${d.name} of VM "${vm.name}" is raw; only qcow2 disks can have snapshots`, { vm: vm.name, disk: d.name });
      out[d.name] = chainOf(record, vm.paths, d);
    }
    if (Object.keys(out).length === 0) throw new SnapshotUnsupported(`VM "${vm.name}" has no disk of its own to snapshot`, { vm: vm.name });
    return out;
  }

  private planCreate(vm: Vm, record: SnapshotRecord, action: ActionOf<"snapshot-create">, now: string) {
    return planCreate(record, this.chains(vm, record), { vm: vm.name, name: action.name, memory: action.memory, max: this.host.config.maxSnapshots, now });
  }

  async create(vm: Vm, action: ActionOf<"snapshot-create">, run: ActionRun): Promise<void> {
    const record = await readSnapshotRecord(vm.paths);
    const plan = this.planCreate(vm, record, action, new Date().toISOString());
    if (action.memory && !vm.session) throw new VmStateConflict(vm.name, vm.settledState(), "save the memory of");
    await run.journaled(action, async () => {
      try {
        await this.images.makeOverlays(vm, plan.overlays);
        if (vm.session && action.memory) await this.createWithMemory(vm, vm.session, action.name, plan.overlays, plan.record);
        else if (vm.session) {
          await this.switchLive(vm, plan.overlays);
          crashPoint("snapshot-switched");
        }
        await writeSnapshotRecord(vm.paths, plan.record);
      } catch (err) {
        if (!(err instanceof MemoryNotSaved)) await this.images.sweep(vm, record).catch(() => {});
        throw err;
      }
    });
    vm.log.info({ snapshot: action.name, disks: plan.overlays.map((o) => o.disk) }, "snapshot taken");
    vm.publish("vm.snapshot-created", { snapshot: action.name, memory: action.memory });
  }

  /**
   * The memory is saved live; at its last pass, with the guest paused, the disks
   * switch onto their overlays. If the memory then cannot be saved, the disks
   * have switched already: the snapshot is kept without memory, and said so.
   */
  private async createWithMemory(vm: Vm, session: QemuSession, name: string, overlays: readonly NewOverlay[], next: SnapshotRecord): Promise<void> {
    const wasRunning = (await session.refreshStatus()) === "running";
    let switched = false;
    try {
      await saveMemory(session, vm.paths.qemuRunDir, path.join(vm.paths.dir, vmstateName(name)), await this.images.identity(vm), async () => {
        await this.switchLive(vm, overlays);
        switched = true;
      });
    } catch (err) {
      if (!switched) throw err;
      const snap = next.snapshots.find((s) => s.name === name)!;
      snap.memory = false;
      await writeSnapshotRecord(vm.paths, next);
      await this.images.sweep(vm, next);
      throw new MemoryNotSaved(`the disks' snapshot "${name}" was taken, but its memory could not be saved: ${(err as Error).message}`, { vm: vm.name, snapshot: name });
    } finally {
      if (wasRunning && (await session.refreshStatus().catch(() => "")) !== "running") await session.execute("cont", undefined, QMP_MS).catch(() => {});
    }
  }

  /** Opens the overlays in the running qemu and moves every disk onto its overlay at one instant. */
  private async switchLive(vm: Vm, overlays: readonly NewOverlay[]): Promise<void> {
    const session = vm.session!;
    const added: string[] = [];
    try {
      const actions: Record<string, unknown>[] = [];
      for (const o of overlays) {
        const disk = vm.definition.disks.find((d) => d.name === o.disk)!;
        const node = overlayNodeName(o.file);
        // The same cache and aio as the disk's own file node: the overlay is the disk from now on.
        const fileNode = { ...(planDisk(disk, path.join(vm.paths.dir, o.file), { ioUring: this.host.ioUring === true }).backends[1] as { node: Record<string, unknown> }).node };
        delete fileNode["node-name"];
        const top = await activeNode(session, o.disk);
        // A qemu started by an earlier vmhostd has its throttle under the top, not over it: the overlay then
        // gets a filter in the VM's group under it, so the guest's writes stay in the budget.
        const file = top.throttled ? fileNode : { driver: "throttle", "throttle-group": THROTTLE_GROUP_ID, file: fileNode };
        // backing null: blockdev-snapshot gives it the disk's current top as its backing. The top is replaced
        // under all its parents: under the throttle filter the device is attached to.
        await session.execute("blockdev-add", { driver: "qcow2", "node-name": node, file, backing: null, discard: "unmap" } as never, QMP_MS);
        added.push(node);
        actions.push({ type: "blockdev-snapshot", data: { node: top.node, overlay: node } });
      }
      await session.executeUntyped("transaction", { actions }, QMP_MS);
    } catch (err) {
      for (const n of added) await session.executeUntyped("blockdev-del", { "node-name": n }, QMP_MS).catch(() => {});
      throw err;
    }
  }

  /** `asStarted` admits a start (memory, owner key): a snapshot with memory is resumed only through it. */
  async revert(vm: Vm, action: ActionOf<"snapshot-revert">, run: ActionRun, asStarted: (body: () => Promise<void>) => Promise<void>): Promise<void> {
    const record = await readSnapshotRecord(vm.paths);
    const plan = planRevert(record, vm.name, action.snapshot);
    if (vm.session && !action.force) throw new VmStateConflict(vm.name, vm.settledState(), "revert (stop it first, or give force) a snapshot of");
    const admitted = plan.snapshot.memory ? asStarted : (body: () => Promise<void>) => body();
    await admitted(() => run.journaled(action, async () => {
      if (vm.session) await killQemu(vm, "host-stop");
      try {
        await this.images.makeOverlays(vm, plan.overlays);
        await writeSnapshotRecord(vm.paths, plan.record);
      } catch (err) {
        await this.images.sweep(vm, record).catch(() => {});
        throw err;
      }
      await this.images.sweep(vm, plan.record);
      if (plan.snapshot.memory) await this.resume(vm, plan.snapshot.name);
    }));
    vm.log.info({ snapshot: action.snapshot }, "reverted to snapshot");
    vm.publish("vm.snapshot-reverted", { snapshot: action.snapshot });
  }

  /** Starts qemu waiting for a migration stream, feeds it the snapshot's memory, and lets the guest run on. */
  private async resume(vm: Vm, snapshot: string): Promise<void> {
    const files = await resolveVmFiles(vm.definition, this.host.pools, vm.paths);
    await checkDisksBeforeStart(vm.definition, files.disks, this.host.pools, chainInspector(vm, this.host));
    await checkSnapshotChains(vm, this.host, await this.images.identity(vm));
    await launchIncomingQemu(vm, this.host);
    try {
      await loadMemory(vm.session!, vm.paths.qemuRunDir, path.join(vm.paths.dir, vmstateName(snapshot)));
      await vm.session!.execute("cont", undefined, QMP_MS);
    } catch (err) {
      await killQemu(vm, "start-failed");
      throw new StorageFailed(`the disks are back at snapshot "${snapshot}" but its memory could not be loaded (start the VM to boot it afresh): ${(err as Error).message}`, { vm: vm.name, snapshot });
    }
  }

  /** Checks the request; the merge then runs as a job under the VM's lock. */
  async prepareDelete(vm: Vm, action: ActionOf<"snapshot-delete">): Promise<PreparedJob> {
    if (vm.job?.state === "running") throw new VmBusy(vm.name, vm.job.kind);
    // Only checked here: the plan is made again under the lock, from the record as it is then.
    planDelete(await readSnapshotRecord(vm.paths), vm.name, action.snapshot);
    const job = this.jobs.create("snapshot-delete", vm.name);
    job.update({ snapshot: action.snapshot });
    return {
      job,
      run: (run) => run.journaled(action, () => this.delete(vm, action.snapshot, job)),
      failed: (err: unknown) => {
        const e = err instanceof VmhError ? err : new StorageFailed((err as Error).message);
        job.finish("failed", undefined, { code: e.code, detail: e.message });
        vm.log.warn({ job: job.id, err: e.message }, "snapshot delete failed; the chain is as it was or merged further, never broken");
      },
    };
  }

  private async delete(vm: Vm, snapshot: string, job?: { setPhase(p: string): void; update(p: Record<string, number | string>): void; finish(s: "succeeded", r: Record<string, unknown>): void }): Promise<void> {
    const record = await readSnapshotRecord(vm.paths);
    const plan = planDelete(record, vm.name, snapshot);
    job?.setPhase("merging");
    if (vm.session) {
      for (const m of plan.merges) await mergeLive(vm.session, vm.paths.dir, m, (done, total) => job?.update({ disk: m.disk, bytesDone: done, bytesTotal: total }));
      crashPoint("snapshot-merged");
    } else {
      const id = await this.images.giveChains(vm, record);
      for (const m of plan.merges) await this.images.mergeOffline(vm, m, id);
    }
    await writeSnapshotRecord(vm.paths, plan.record);
    await this.images.sweep(vm, plan.record);
    job?.setPhase("completed");
    job?.finish("succeeded", { snapshot, disks: plan.merges.map((m) => m.disk) });
    vm.log.info({ snapshot }, "snapshot deleted");
    vm.publish("vm.snapshot-deleted", { snapshot });
  }

  /**
   * After a restart, under the VM's lock: a create is finished if qemu already
   * writes the new overlays (or, with no qemu, if they were all made), else
   * undone; a revert is settled by the record (written or not) and a sweep; a
   * delete is merged again (a merge done twice gives the same chain).
   */
  async recover(vm: Vm, entry: JournalEntry): Promise<void> {
    const action = entry.action;
    await this.settleQemu(vm);
    const record = await readSnapshotRecord(vm.paths);
    if (action.kind === "snapshot-create") {
      if (record.snapshots.some((s) => s.name === action.name)) return void (await this.images.sweep(vm, record));
      const plan = this.planCreate(vm, record, action, entry.startedAt);
      if (await this.createTookEffect(vm, plan.overlays)) {
        await writeSnapshotRecord(vm.paths, plan.record);
        vm.log.info({ snapshot: action.name }, "interrupted snapshot finished");
      } else {
        vm.log.info({ snapshot: action.name }, "interrupted snapshot rolled back");
      }
      await this.images.sweep(vm, (await readSnapshotRecord(vm.paths)));
      return;
    }
    if (action.kind === "snapshot-revert") {
      await this.images.sweep(vm, record);
      return;
    }
    if (action.kind === "snapshot-delete") {
      if (record.snapshots.some((s) => s.name === action.snapshot)) await this.delete(vm, action.snapshot);
      else await this.images.sweep(vm, record);
    }
  }

  /**
   * A memory save cut short leaves qemu mid-migration to a socket nobody reads,
   * maybe paused at the switchover: cancelled, and the guest runs on. A memory
   * load cut short leaves a qemu waiting for its stream: it is ended.
   */
  private async settleQemu(vm: Vm): Promise<void> {
    const session = vm.session;
    if (!session) return;
    const status = await session.refreshStatus();
    if (status === "inmigrate" || status === "prelaunch") return await killQemu(vm, "start-failed");
    const info = (await session.executeUntyped("query-migrate", undefined, QMP_MS)) as { status?: string };
    const inFlight = info.status !== undefined && !["completed", "failed", "cancelled", "none"].includes(info.status);
    if (inFlight) {
      await session.executeUntyped("migrate_cancel", undefined, QMP_MS).catch(() => {});
      for (let i = 0; i < 100 && ["active", "pre-switchover", "device", "cancelling"].includes(((await session.executeUntyped("query-migrate", undefined, QMP_MS)) as { status?: string }).status ?? ""); i++) await sleep(100);
    }
    await session.executeUntyped("migrate-set-capabilities", { capabilities: [{ capability: "pause-before-switchover", state: false }] }, QMP_MS).catch(() => {});
    // Only the save pauses a guest in these states: it was running before.
    const now = await session.refreshStatus();
    if (now === "postmigrate" || now === "finish-migrate" || (inFlight && now === "paused")) await session.execute("cont", undefined, QMP_MS).catch(() => {});
  }

  private async createTookEffect(vm: Vm, overlays: readonly NewOverlay[]): Promise<boolean> {
    const session = vm.session;
    if (!session) {
      // No qemu: the overlays, if all there, hold whatever it wrote to them before it ended.
      for (const o of overlays) if ((await this.images.allocated(vm, o.file)) === 0) return false;
      return true;
    }
    const tops = await Promise.all(overlays.map((o) => activeNode(session, o.disk)));
    if (tops.every((t, i) => t.file === path.join(vm.paths.dir, overlays[i]!.file))) return true;
    // The transaction never ran: the overlays opened for it are closed again.
    for (const o of overlays) await session.executeUntyped("blockdev-del", { "node-name": overlayNodeName(o.file) }, QMP_MS).catch(() => {});
    return false;
  }
}

/** The disks' snapshot was taken and recorded; only its memory is missing. */
class MemoryNotSaved extends StorageFailed {}

/** `snapshots/a.7.qcow2` → `ov7`: overlay numbers are unique in a VM, and node names are short. */
export function overlayNodeName(file: string): string {
  const n = /\.(\d+)\.qcow2$/.exec(file)?.[1];
  if (!n) throw new Error(`not an overlay: ${file}`);
  return `ov${n}`;
}
