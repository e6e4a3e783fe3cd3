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

  async info(file: string): Promise<{ format: string; virtualSize: number; backingFile?: string }> {
    try {
      // -U: the image may be open in a running qemu that holds its lock.
      const { stdout } = await run(this.binary, ["info", "-U", "--output=json", file], { timeout: 30_000 });
      const info = JSON.parse(stdout) as { format: string; "virtual-size": number; "backing-filename"?: string };
      return {
        format: info.format,
        virtualSize: info["virtual-size"],
        ...(info["backing-filename"] ? { backingFile: info["backing-filename"] } : {}),
      };
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new StorageFailed(`qemu-img info failed: ${(e.stderr || e.message).trim()}`, { file });
    }
  }

  /**
   * A qcow2 overlay on `base`, which qemu then only reads. The base's format is
   * written into the overlay (-F) so it is never guessed from the base's content.
   */
  async createOverlay(file: string, base: string, baseFormat: string, sizeBytes?: number): Promise<void> {
    const args = ["create", "-q", "-f", "qcow2", "-b", base, "-F", baseFormat, file];
    if (sizeBytes !== undefined) args.push(String(sizeBytes));
    await this.run("create", args, file, 60_000);
  }

  /** A copy of `source` in `format` (sparse: unallocated areas stay unallocated). */
  async convert(source: string, sourceFormat: string, file: string, format: "qcow2" | "raw"): Promise<void> {
    await this.run("convert", ["convert", "-q", "-f", sourceFormat, "-O", format, source, file], file, 60 * 60_000);
  }

  async resize(file: string, format: "qcow2" | "raw", sizeBytes: number): Promise<void> {
    await this.run("resize", ["resize", "-q", "-f", format, file, String(sizeBytes)], file, 60_000);
  }

  private async run(what: string, args: string[], file: string, timeout: number): Promise<void> {
    try {
      await run(this.binary, args, { timeout });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new StorageFailed(`qemu-img ${what} failed: ${(e.stderr || e.message).trim()}`, { file });
    }
  }
}
