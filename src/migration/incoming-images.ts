// The pool images the destination of a storage-copy migration makes for the
// disks that live in a pool (`image`). Made at the moment of use (exclusively,
// in a directory resolved inside a pool right then), remembered per incoming VM
// and in its journal entry, and removed again if the migration is aborted or a
// restart cuts it short; a commit makes them the guest's, and they stay.
import { createdImagesSchema, type CreatedImage } from "../store/operation-journal.js";
import { FileExists, VmExists } from "../errors.js";
import { createInPool, removeIfSame } from "../storage/pool-files.js";
import type { ImageFormat, QemuImg } from "../storage/qemu-img.js";
import type { StoragePools } from "../storage/storage-pools.js";


export class IncomingImages {
  private readonly byVm = new Map<string, CreatedImage[]>();

  constructor(
    private readonly pools: StoragePools,
    private readonly qemuImg: QemuImg,
  ) {}

  /** Makes `file`, never over an existing one (409 as the VM's image already being here). */
  async create(vm: string, file: string, field: string, format: ImageFormat, size: number): Promise<void> {
    const made = await createInPool(this.pools, file, field).catch((err: unknown) => {
      if (err instanceof FileExists) throw new VmExists(`${vm}: image ${file} already exists here`);
      throw err;
    });
    this.byVm.set(vm, [...this.list(vm), { path: made.path, dev: made.dev, ino: made.ino }]);
    try {
      await this.qemuImg.createOnFd(made.handle.fd, made.path, format, size);
    } finally {
      await made.handle.close();
    }
  }

  /** What was made for the VM: recorded in its journal entry. */
  list(vm: string): CreatedImage[] {
    return this.byVm.get(vm) ?? [];
  }

  /** After a restart: what the interrupted journal entry recorded. */
  restore(vm: string, recorded: unknown): void {
    const parsed = createdImagesSchema.safeParse(recorded);
    if (parsed.success) this.byVm.set(vm, parsed.data);
  }

  /** The migration committed: the images are the guest's now. */
  keep(vm: string): void {
    this.byVm.delete(vm);
  }

  /** Removes what was made, only where each name still holds the very file made. */
  async remove(vm: string): Promise<void> {
    for (const img of this.list(vm)) await removeIfSame(img.path, img).catch(() => {});
    this.byVm.delete(vm);
  }
}
