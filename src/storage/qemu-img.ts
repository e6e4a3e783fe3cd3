// Disk images through qemu-img, spawned with an argv array.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { StorageFailed } from "../errors.js";

const run = promisify(execFile);

export class QemuImg {
  constructor(private readonly binary = "qemu-img") {}

  async create(file: string, format: "qcow2" | "raw", sizeBytes: number): Promise<void> {
    const args = ["create", "-q", "-f", format];
    // Preallocating qcow2 metadata keeps the first writes of a new guest from stalling on allocation.
    if (format === "qcow2") args.push("-o", "preallocation=metadata");
    args.push(file, String(sizeBytes));
    try {
      await run(this.binary, args, { timeout: 60_000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new StorageFailed(`qemu-img create failed: ${(e.stderr || e.message).trim()}`, { file });
    }
  }

  async info(file: string): Promise<{ format: string; virtualSize: number }> {
    try {
      // -U: the image may be open in a running qemu that holds its lock.
      const { stdout } = await run(this.binary, ["info", "-U", "--output=json", file], { timeout: 30_000 });
      const info = JSON.parse(stdout) as { format: string; "virtual-size": number };
      return { format: info.format, virtualSize: info["virtual-size"] };
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new StorageFailed(`qemu-img info failed: ${(e.stderr || e.message).trim()}`, { file });
    }
  }
}
