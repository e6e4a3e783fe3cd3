// Who each qemu runs as. qemu never runs as root unless the operator says so:
// every VM gets a uid of its own, taken from the subordinate uids delegated to
// the qemu user (`--qemu-user`, /etc/subuid), and that user's group (kvm, so
// /dev/kvm opens on a real host). One VM's qemu then cannot open another VM's
// files: they are owned by another uid, mode 0600. The slot a VM gets is kept in
// its directory, so it is the same uid after a restart and its files stay its own.
// A uid is never handed to a second VM while files are still its (uid-allocator.ts).
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { writeFileAtomic } from "../store/atomic-file.js";
import { UidAllocator, UidRangeExhausted, uidsOwningFiles, type UidRange } from "./uid-allocator.js";

/** uid and gid a qemu runs as; undefined means root (an explicit `--qemu-user root`). */
export interface QemuIdentity {
  uid: number;
  gid: number;
}

type SubRange = UidRange;

const SLOT_FILE = "qemu-uid";
/** In the state directory: the next uid of the range never handed out. */
const MARK_FILE = "qemu-uid-mark";

export class QemuUserError extends Error {}

export class QemuUsers {
  /** uid by VM name, for every VM that has been given one. */
  private readonly byVm = new Map<string, number>();

  private constructor(
    readonly userName: string,
    private readonly user: QemuIdentity | undefined,
    private readonly range: SubRange | undefined,
    private readonly vmsDir: string,
    private readonly allocator: UidAllocator | undefined,
  ) {}

  /**
   * Reads the user, its delegated range and the slots VMs already hold. Throws
   * QemuUserError for an unknown user. `fileDirs` are where a VM's uid may own
   * files (the pools, the state and run directories): looked through before an
   * old uid is handed out again.
   */
  static async load(userName: string, stateDir: string, fileDirs: readonly string[], log: Logger): Promise<QemuUsers> {
    const vmsDir = path.join(stateDir, "vms");
    if (userName === "root") {
      log.warn("qemu runs as root (--qemu-user root): a guest that breaks out of qemu owns the host");
      return new QemuUsers(userName, undefined, undefined, vmsDir, undefined);
    }
    const entry = (await readFile("/etc/passwd", "utf8").catch(() => ""))
      .split("\n")
      .map((l) => l.split(":"))
      .find((f) => f[0] === userName);
    if (!entry) throw new QemuUserError(`no user "${userName}" on this host (scripts/setup.sh creates vmhostd-qemu)`);
    const user = { uid: Number(entry[2]), gid: Number(entry[3]) };
    if (user.uid === 0) throw new QemuUserError(`user "${userName}" is root; say --qemu-user root to mean it`);
    const range = await subordinateRange(userName, user.uid);
    if (!range) log.warn({ user: userName }, "the qemu user has no range in /etc/subuid: every VM runs as that one user, and VMs are not isolated from each other");
    const allocator = range ? new UidAllocator(range, path.join(stateDir, MARK_FILE), () => uidsOwningFiles(fileDirs, range)) : undefined;
    const users = new QemuUsers(userName, user, range, vmsDir, allocator);
    await users.loadSlots(log);
    // A state disk that cannot be written now must not keep the daemon down: the first allocation writes the mark then.
    await allocator?.init(new Set(users.byVm.values())).catch((err: unknown) => log.warn({ err }, "cannot write the qemu uid mark yet"));
    return users;
  }

  get isRoot(): boolean {
    return this.user === undefined;
  }

  /** The group every qemu runs in (undefined for root). */
  get gid(): number | undefined {
    return this.user?.gid;
  }

  /** The VM's identity, giving it a uid of its own the first time. */
  async identityFor(vm: string): Promise<QemuIdentity | undefined> {
    if (!this.user) return undefined;
    if (!this.range || !this.allocator) return this.user;
    let uid = this.byVm.get(vm);
    if (uid === undefined) {
      try {
        uid = await this.allocator.allocate(new Set(this.byVm.values()));
      } catch (err) {
        if (err instanceof UidRangeExhausted) throw new QemuUserError(`no free uid left in ${this.userName}'s /etc/subuid range: ${err.message}`);
        throw err;
      }
      await writeFileAtomic(path.join(this.vmsDir, vm, SLOT_FILE), `${uid}\n`, 0o644);
      this.byVm.set(vm, uid);
    }
    return { uid, gid: this.user.gid };
  }

  /** A deleted VM no longer holds its uid; the uid comes round again only once it owns no file. */
  forget(vm: string): void {
    this.byVm.delete(vm);
  }

  private async loadSlots(log: Logger): Promise<void> {
    if (!this.range) return;
    const names = await readdir(this.vmsDir).catch(() => [] as string[]);
    await Promise.all(
      names.map(async (name) => {
        const text = await readFile(path.join(this.vmsDir, name, SLOT_FILE), "utf8").catch(() => undefined);
        const uid = Number(text?.trim());
        if (text === undefined) return;
        if (!Number.isInteger(uid) || uid < this.range!.start || uid >= this.range!.start + this.range!.count) {
          log.warn({ vm: name, uid: text.trim() }, "a VM's qemu uid is outside the qemu user's range; it gets a new one");
          return;
        }
        this.byVm.set(name, uid);
      }),
    );
  }
}

/** The first /etc/subuid entry for the user (by name or uid). */
async function subordinateRange(name: string, uid: number): Promise<SubRange | undefined> {
  const text = await readFile("/etc/subuid", "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [who, start, count] = line.split(":");
    if ((who === name || who === String(uid)) && Number(count) > 0) return { start: Number(start), count: Number(count) };
  }
  return undefined;
}
