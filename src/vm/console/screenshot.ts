// A picture of the VM's display, taken by qemu (QMP screendump). qemu can only
// write it to a file, so it goes into the VM's run directory under a name of its
// own (screenshots may be taken side by side) and is read back and removed.
// A screenshot is a read, like a GET of the VM: it takes no operation lock.
import { randomUUID } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";
import { thumbnailPng } from "./thumbnail.js";

/** screendump renders and encodes the whole frame; under TCG on a busy host that can take seconds. */
const SCREENDUMP_TIMEOUT_MS = 30_000;

/** `width`: a thumbnail at most that wide, the aspect kept (qemu writes PPM, scaled and encoded here). */
export async function takeScreenshot(vm: Vm, width?: number): Promise<Buffer> {
  const session = vm.session;
  if (!session) throw new VmStateConflict(vm.name, vm.state(), "take a screenshot of");
  // A qemu started before VMs had a display (and adopted since) has nothing to show.
  if (!session.record.argv.includes("-vnc")) {
    throw new VmStateConflict(vm.name, "running without a display device (started by an older vmhostd)", "take a screenshot of");
  }
  // In qemu's own run directory: an unprivileged qemu may write nowhere else.
  const format = width === undefined ? "png" : "ppm";
  const file = path.join(vm.paths.qemuRunDir, `screendump-${randomUUID()}.${format}`);
  try {
    await session.execute("screendump", { filename: file, format }, SCREENDUMP_TIMEOUT_MS);
    const image = await readFile(file);
    return width === undefined ? image : thumbnailPng(image, width);
  } finally {
    await rm(file, { force: true });
  }
}
