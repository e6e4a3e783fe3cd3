// Whether qemu can use Linux io_uring for disk I/O, asked once at daemon start:
// the kernel must allow it (io_uring_disabled, Linux 6.6+) and qemu must be built
// with liburing. qemu-img shares qemu's block layer, so opening a scratch file with
// aio=io_uring through it answers for qemu too. Any doubt means no: threads work everywhere.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execChild } from "../host/child-process.js";

export async function probeIoUring(qemuImg = "qemu-img"): Promise<boolean> {
  const disabled = await readFile("/proc/sys/kernel/io_uring_disabled", "utf8").catch(() => "0");
  if (disabled.trim() !== "0") return false;
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-uring-"));
  try {
    const file = path.join(dir, "probe.raw");
    await writeFile(file, Buffer.alloc(4096));
    await execChild(qemuImg, ["info", "--image-opts", `driver=raw,file.driver=file,file.filename=${file},file.aio=io_uring`], {
      timeout: 10_000,
    });
    return true;
  } catch {
    return false;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
