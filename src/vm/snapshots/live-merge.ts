// One disk's layer merged into the one under it while the guest runs:
// block-commit. Into a layer below the top it ends by itself; the top (the image
// the guest writes) is committed by an active commit, which mirrors the guest's
// new writes too, reports READY, and on job-complete moves the device onto the
// base. A commit a restart interrupted is still running in qemu (block jobs
// outlive the daemon's connection): it is followed, not started again.
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { StorageFailed } from "../../errors.js";
import { diskBackendIds } from "../../qemu/plan-devices.js";
import type { QemuSession } from "../qemu-session.js";
import { activeNode, blockJobs, nodeOfImage } from "./block-graph.js";
import type { Merge } from "./snapshot-plans.js";
import { backingNameFor } from "./snapshot-record.js";

const QMP_MS = 30_000;
const POLL_MS = 200;
/** A merge may take long on a big layer; it is abandoned only if it makes no progress for this long. */
const STALL_MS = 10 * 60_000;

export async function mergeLive(session: QemuSession, vmDir: string, m: Merge, progress: (done: number, total: number) => void): Promise<void> {
  const jobId = `commit-${m.disk}`;
  const topFile = path.join(vmDir, m.top);
  let job = (await blockJobs(session)).find((j) => j.device === jobId);
  if (!job) {
    const top = await nodeOfImage(session, topFile);
    // Merged already: qemu no longer has the layer open.
    if (!top) return;
    const base = await nodeOfImage(session, path.join(vmDir, m.base));
    if (!base) throw new StorageFailed(`qemu has no node for ${m.base} under disk ${m.disk}`);
    const active = await activeNode(session, m.disk);
    await session.executeUntyped(
      "block-commit",
      {
        "job-id": jobId,
        // qemu wants the root: the VM's throttle filter over the chain (or, started by an earlier vmhostd, the top).
        device: active.root,
        "top-node": top,
        "base-node": base,
        // The layer over the merged one then names the base, by a name relative to itself.
        ...(m.above ? { "backing-file": backingNameFor(m.above, m.base) } : {}),
        "auto-dismiss": false,
      },
      QMP_MS,
    );
  }
  let lastOffset = -1;
  let lastMove = Date.now();
  for (;;) {
    job = (await blockJobs(session)).find((j) => j.device === jobId);
    if (!job) break;
    progress(job.offset, job.len);
    if (job.offset !== lastOffset) {
      lastOffset = job.offset;
      lastMove = Date.now();
    } else if (Date.now() - lastMove > STALL_MS) throw new StorageFailed(`merging ${m.top} made no progress`);
    if (job.status === "concluded") {
      await session.executeUntyped("job-dismiss", { id: jobId }, QMP_MS);
      if (job.error) throw new StorageFailed(`merging ${m.top} into ${m.base} failed: ${job.error}`);
      break;
    }
    // An active commit waits here for the word to move the device onto the base.
    if (job.ready && job.status === "ready") await session.executeUntyped("job-complete", { id: jobId }, QMP_MS);
    await sleep(POLL_MS);
  }
  // A node the daemon opened (the disk's planned top, an overlay added live) outlives the merge until it is closed.
  const leftover = await nodeOfImage(session, topFile);
  if (leftover) {
    await session.executeUntyped("blockdev-del", { "node-name": leftover }, QMP_MS);
    const ids = diskBackendIds(m.disk);
    if (leftover === ids.formatNode) await session.executeUntyped("blockdev-del", { "node-name": ids.fileNode }, QMP_MS).catch(() => {});
  }
}
