// Disk images through qemu-img, spawned with an argv array and a minimal
// environment. Every call names the image's format (-f): qemu-img never guesses
// one from content, which a guest controls. Nothing here lets qemu-img open a
// backing file the daemon has not checked: overlays are written with -u (the base
// is not opened) and a source with a backing chain is given as a `json:` node tree
// with the checked chain spelt out (see image-inspector.ts).
import { StorageFailed } from "../errors.js";
import { spawnChild } from "../host/child-process.js";

export type ImageFormat = "qcow2" | "raw";

/** Who qemu-img runs as: a guest-written file is read by that VM's uid, not root. */
export interface RunAs {
  uid: number;
  gid: number;
}

/** One image of a checked chain, top first. */
export interface ChainLink {
  file: string;
  format: ImageFormat;
  /** A checked external data file of this qcow2 image. */
  dataFile?: string;
}

export class QemuImg {
  constructor(private readonly binary = "qemu-img") {}

  async create(file: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    await this.run("create", createArgs(file, format, sizeBytes), file, 60_000);
  }

  /**
   * Formats a file the daemon has already opened (and checked) itself: qemu-img
   * writes through the open descriptor, so a path swapped in meanwhile is never used.
   */
  async createOnFd(fd: number, label: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    await this.run("create", createArgs("/dev/fd/3", format, sizeBytes), label, 60_000, { fd });
  }

  /** An empty qcow2 overlay made through an open descriptor, naming `backing` (a qcow2) without opening it (-u). */
  async createOverlayOnFd(fd: number, label: string, backing: string, sizeBytes: number): Promise<void> {
    await this.run("create", ["create", "-q", "-u", "-f", "qcow2", "-b", backing, "-F", "qcow2", "/dev/fd/3", String(sizeBytes)], label, 60_000, { fd });
  }

  /** The virtual size, read with the declared format. -U: a running qemu may hold the image's lock. */
  async info(file: string, format: ImageFormat, as?: RunAs): Promise<{ virtualSize: number }> {
    const out = await this.run("info", ["info", "-U", "-f", format, "--output=json", file], file, 30_000, as ? { as } : {});
    const info = JSON.parse(out) as { "virtual-size": number };
    return { virtualSize: info["virtual-size"] };
  }

  /**
   * A qcow2 overlay on `base`, which qemu then only reads. The base's format is
   * written into the overlay (-F) so it is never guessed from the base's content,
   * and -u with an explicit size keeps qemu-img from opening the base at all.
   */
  async createOverlay(file: string, base: string, baseFormat: ImageFormat, sizeBytes: number): Promise<void> {
    await this.run("create", ["create", "-q", "-u", "-f", "qcow2", "-b", base, "-F", baseFormat, file, String(sizeBytes)], file, 60_000);
  }

  /**
   * A self-contained copy of a checked chain in `format` (sparse: unallocated
   * areas stay unallocated). `topFd`: the top image, already opened and checked
   * by the daemon, is read through that descriptor rather than by its name.
   */
  async convert(chain: readonly ChainLink[], file: string, format: ImageFormat, topFd?: number): Promise<void> {
    const nodes = topFd === undefined ? chain : [{ ...chain[0]!, file: "/dev/fd/3" }, ...chain.slice(1)];
    // qemu-img takes a `json:` file name as the node tree itself, its format included.
    const args = ["convert", "-q", "-O", format, `json:${JSON.stringify(chainNode(nodes))}`, file];
    await this.run("convert", args, file, 60 * 60_000, topFd === undefined ? {} : { fd: topFd });
  }

  /** Grows the image itself; its backing file, which a resize has no use for, is not opened. */
  async resize(file: string, format: ImageFormat, sizeBytes: number, as?: RunAs): Promise<void> {
    const node = `json:${JSON.stringify(chainNode([{ file, format }]))}`;
    await this.run("resize", ["resize", "-q", node, String(sizeBytes)], file, 60_000, as ? { as } : {});
  }

  /**
   * Merges a qcow2 layer into the one under it (its backing file), offline. Run
   * as the VM's uid: the chain's headers are the guest's writing, and that uid
   * can open only the VM's own files. -d: the layer is removed afterwards, so
   * emptying it would be wasted work.
   */
  async commit(file: string, as?: RunAs): Promise<void> {
    await this.run("commit", ["commit", "-q", "-d", "-f", "qcow2", file], file, 60 * 60_000, as ? { as } : {});
  }

  /** Rewrites which file a qcow2 layer names as its backing (-u: the content is the same, nothing is copied). */
  async rebaseUnsafe(file: string, backing: string, backingFormat: ImageFormat, as?: RunAs): Promise<void> {
    await this.run("rebase", ["rebase", "-q", "-u", "-f", "qcow2", "-b", backing, "-F", backingFormat, file], file, 60_000, as ? { as } : {});
  }

  private run(what: string, args: string[], file: string, timeout: number, opts: { fd?: number; as?: RunAs } = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawnChild(this.binary, args, {
        stdio: ["ignore", "pipe", "pipe", ...(opts.fd !== undefined ? [opts.fd] : [])],
        timeout,
        ...(opts.as ? { uid: opts.as.uid, gid: opts.as.gid } : {}),
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on("data", (c: Buffer) => out.push(c));
      child.stderr!.on("data", (c: Buffer) => err.push(c));
      child.on("error", (e) => reject(new StorageFailed(`qemu-img ${what} failed: ${e.message}`, { file })));
      child.on("close", (code, signal) => {
        if (code === 0) return resolve(Buffer.concat(out).toString("utf8"));
        const why = Buffer.concat(err).toString("utf8").trim() || (signal ? `killed by ${signal}` : `exit ${code}`);
        reject(new StorageFailed(`qemu-img ${what} failed: ${why}`, { file }));
      });
    });
  }
}

function createArgs(file: string, format: ImageFormat, sizeBytes: number): string[] {
  const args = ["create", "-q", "-f", format];
  // Preallocating qcow2 metadata keeps the first writes of a new guest from stalling on allocation.
  if (format === "qcow2") args.push("-o", "preallocation=metadata");
  args.push(file, String(sizeBytes));
  return args;
}

/**
 * A checked chain as one block-node tree, every node's driver and file named and
 * the last image's backing cut off (`backing: null`: it has none, and none is to
 * be looked up from its header). JSON, so no file name can add an option.
 */
export function chainNode(chain: readonly ChainLink[]): Record<string, unknown> {
  const [link, ...rest] = chain;
  if (!link) throw new Error("an empty image chain");
  return {
    driver: link.format,
    file: { driver: "file", filename: link.file },
    ...(link.dataFile ? { "data-file": { driver: "file", filename: link.dataFile } } : {}),
    ...(link.format === "qcow2" ? { backing: rest.length ? chainNode(rest) : null } : {}),
  };
}
