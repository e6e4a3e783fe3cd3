// Looks at a pool image before it serves as a base, is imported or is used in
// place, as OpenStack's format inspector does since CVE-2024-32498: a qcow2 can
// name other files (a backing file, an external data file) that qemu then opens
// and shows to the guest, so a hostile image could make the host copy /etc/shadow
// into a disk. The chain is walked here one image at a time, each read with its
// recorded format, by parsing headers the daemon reads itself (no qemu-img on an
// unchecked file). Every file it names must resolve inside a pool.
import { constants } from "node:fs";
import { open, realpath } from "node:fs/promises";
import path from "node:path";
import { UnsafeImage, ValidationFailed } from "../errors.js";
import { isQcow2, parseQcow2Header, Qcow2HeaderError, QCOW2_HEADER_READ_BYTES, type Qcow2Header } from "./qcow2-header.js";
import type { ChainLink, ImageFormat } from "./qemu-img.js";
import type { StoragePools } from "./storage-pools.js";

/** Backing files below an image, at most: deeper chains are refused. */
export const DEFAULT_MAX_CHAIN_DEPTH = 8;

export interface InspectedImage {
  /** The image and its backing files, top first, each with its checked format. */
  chain: ChainLink[];
  virtualSize: number;
  /** Identity of the top file when inspected, to see later that it is still the same file. */
  dev: number;
  ino: number;
}

interface ReadImage {
  header?: Qcow2Header;
  size: number;
  dev: number;
  ino: number;
}

export class ImageInspector {
  constructor(
    private readonly pools: Pick<StoragePools, "poolOfRealPath">,
    private readonly maxDepth = DEFAULT_MAX_CHAIN_DEPTH,
  ) {}

  /**
   * `file` is a resolved pool path (StoragePools.resolveFile), `format` its
   * declared format; `field` names the request field for errors, `formatField`
   * the field that declared the format.
   */
  async inspect(file: string, format: ImageFormat, field: string, formatField: string): Promise<InspectedImage> {
    const top = await readImage(file, format, field);
    if (format === "qcow2" && !top.header) {
      throw new ValidationFailed(`${formatField}: the file is not a qcow2 image`, [{ field: formatField, message: "the file is not a qcow2 image; say raw if it is one" }]);
    }
    const chain: ChainLink[] = [];
    const seen = new Set<string>();
    // qemu combines a relative name with the directory of the path it opened the image by.
    let current: { qemuPath: string; real: string; format: ImageFormat; image: ReadImage } = { qemuPath: file, real: file, format, image: top };
    for (;;) {
      seen.add(current.real);
      const header = current.image.header;
      const link: ChainLink = { file: current.real, format: current.format };
      chain.push(link);
      if (current.format === "raw" || !header) break;
      if (header.cryptMethod !== 0) throw new UnsafeImage(field, `${current.real} is encrypted; encrypted images are not supported`);
      if (header.hasDataFile || header.dataFile !== undefined) {
        if (header.dataFile === undefined) throw new UnsafeImage(field, `${current.real} needs an external data file it does not name`);
        // qemu looks a relative data file name up from its own working directory, not the image's.
        if (!path.isAbsolute(header.dataFile)) throw new UnsafeImage(field, `${current.real} names its data file "${header.dataFile}" by a relative path, not an absolute path`);
        link.dataFile = (await this.named(header.dataFile, current.qemuPath, field, "data file")).real;
      }
      if (header.backingFile === undefined) break;
      if (chain.length > this.maxDepth) {
        throw new UnsafeImage(field, `the backing chain is deeper than ${this.maxDepth} images`);
      }
      const backingFormat = header.backingFormat;
      if (backingFormat !== "qcow2" && backingFormat !== "raw") {
        throw new UnsafeImage(
          field,
          backingFormat === undefined
            ? `${current.real} does not record its backing file's format`
            : `${current.real}'s backing file is ${backingFormat}; only qcow2 and raw are supported`,
        );
      }
      const next = await this.named(header.backingFile, current.qemuPath, field, "backing file");
      if (seen.has(next.real)) throw new UnsafeImage(field, `the backing chain loops at ${next.real}`);
      const image = await readImage(next.real, backingFormat, field);
      if (backingFormat === "qcow2" && !image.header) throw new UnsafeImage(field, `backing file ${next.real} is not the qcow2 image its overlay says`);
      current = { qemuPath: next.qemuPath, real: next.real, format: backingFormat, image };
    }
    return { chain, virtualSize: top.header?.virtualSize ?? top.size, dev: top.dev, ino: top.ino };
  }

  /** A file an image names, as qemu would find it; it must exist and lie in a pool. */
  private async named(name: string, imagePath: string, field: string, what: string): Promise<{ qemuPath: string; real: string }> {
    // `json:{...}`, `nbd://...`, `file:...`: qemu would read options or a protocol, not a path.
    if (/^[^/\\]*:/.test(name)) throw new UnsafeImage(field, `the ${what} "${name}" names a protocol, not a file`);
    // Joined as text, not normalised: the kernel resolves `..` after symlinks, as it does for qemu.
    const qemuPath = path.isAbsolute(name) ? name : `${path.dirname(imagePath)}/${name}`;
    const real = await realpath(qemuPath).catch(() => undefined);
    if (real === undefined) throw new UnsafeImage(field, `the ${what} "${name}" does not exist`);
    if (!(await this.pools.poolOfRealPath(real))) throw new UnsafeImage(field, `the ${what} "${name}" lies outside every storage pool`);
    return { qemuPath, real };
  }
}

/** Opens the file itself (no symlink followed at the last step) and reads its header if it is to be qcow2. */
async function readImage(file: string, format: ImageFormat, field: string): Promise<ReadImage> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw new UnsafeImage(field, `cannot open ${file}: ${(err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UnsafeImage(field, `${file} is not a regular file`);
    const base = { size: st.size, dev: st.dev, ino: st.ino };
    if (format === "raw") return base;
    const buf = Buffer.alloc(Math.min(QCOW2_HEADER_READ_BYTES, st.size));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead);
    if (!isQcow2(head)) return base;
    try {
      return { ...base, header: parseQcow2Header(head) };
    } catch (err) {
      if (err instanceof Qcow2HeaderError) throw new UnsafeImage(field, `${file}: ${err.message}`);
      throw err;
    }
  } finally {
    await fh.close();
  }
}
