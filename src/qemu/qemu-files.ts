// Handing a VM's files to its unprivileged qemu before qemu opens them. The
// list comes from what qemu is told to open (at start the machine plan's block
// nodes, kernel, initrd and console log, see plan-files.ts; a blockdev-add's
// nodes later), so a new kind of device needs no code here. Files qemu writes
// become the VM uid's, mode 0600; files it only reads (shared images, ISOs,
// firmware, kernels) are left as the operator made them and must be readable by
// the VM's uid or the qemu group: otherwise the start is refused naming the
// file, rather than qemu failing later.
import { chmod, chown, mkdir, open, stat } from "node:fs/promises";
import path from "node:path";
import { FileNotAccessible, UnsafeImage } from "../errors.js";
import { openExisting } from "../storage/pool-files.js";
import type { VmPaths } from "../store/vm-paths.js";
import type { QemuIdentity } from "./qemu-user.js";

export interface QemuFiles {
  readWrite: string[];
  readOnly: string[];
}

/**
 * Every `"driver": "file"` node in a blockdev-add's arguments, with whether it (or a
 * node above it) is read-only: any blockdev-add, not only a planned one (backup
 * targets, migration mirrors).
 */
export function blockdevFiles(node: unknown, readOnlyAbove = false, out: QemuFiles = { readWrite: [], readOnly: [] }): QemuFiles {
  if (!node || typeof node !== "object") return out;
  const n = node as Record<string, unknown>;
  const readOnly = readOnlyAbove || n["read-only"] === true;
  if (n.driver === "file" && typeof n.filename === "string") (readOnly ? out.readOnly : out.readWrite).push(n.filename);
  for (const v of Object.values(n)) if (v && typeof v === "object") blockdevFiles(v, readOnly, out);
  return out;
}

function allows(st: { mode: number; uid: number; gid: number }, id: QemuIdentity, bits: { user: number; group: number; other: number }): boolean {
  if (st.uid === id.uid) return (st.mode & bits.user) !== 0;
  if (st.gid === id.gid) return (st.mode & bits.group) !== 0;
  return (st.mode & bits.other) !== 0;
}

/** Every directory above `file` must let the VM's uid pass (x). */
export async function checkReachable(file: string, id: QemuIdentity): Promise<void> {
  let dir = path.dirname(path.resolve(file));
  const dirs: string[] = [];
  for (;;) {
    dirs.push(dir);
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  for (const d of dirs.reverse()) {
    const st = await stat(d);
    if (!allows(st, id, { user: 0o100, group: 0o010, other: 0o001 })) {
      throw new FileNotAccessible(`qemu (uid ${id.uid}) cannot reach ${file}: directory ${d} is mode ${(st.mode & 0o777).toString(8)}`, { file, directory: d });
    }
  }
}

/** How a refusal names a file qemu was to open: the request field it came from, else the file. */
export type FieldOf = (file: string) => string | undefined;

/**
 * A file qemu writes: the VM's own from now on. Changed through a descriptor
 * opened without following symlinks, so a link swapped in is never chowned. A
 * file with other hard links could be one outside the pools under a pool name:
 * refused, unless it is in the VM's own directory (`ownDir`).
 */
export async function giveToQemu(file: string, id: QemuIdentity, ownDir?: string, fieldOf?: FieldOf): Promise<void> {
  await checkReachable(file, id);
  const field = fieldOf?.(file) ?? file;
  const f = await openExisting(file, field);
  try {
    const st = await f.handle.stat();
    if (!st.isFile()) throw new UnsafeImage(field, `${file} is not a regular file`, { file });
    // The VM's directory is root's (0711): only the daemon puts names in it.
    const own = ownDir !== undefined && path.resolve(file).startsWith(ownDir + path.sep);
    if (st.nlink > 1 && !own) {
      throw new UnsafeImage(field, `${file} has ${st.nlink} hard links; a file qemu writes must have no other name`, { file });
    }
    await f.handle.chown(id.uid, id.gid);
    await f.handle.chmod(0o600);
  } finally {
    await f.handle.close();
  }
}

/** A file qemu only reads: left as it is, but it must be readable by the VM's uid. */
export async function checkReadable(file: string, id: QemuIdentity, ownDir?: string): Promise<void> {
  // The VM's own read-only files (its cloud-init seed) are simply given to it.
  if (ownDir && path.resolve(file).startsWith(ownDir + path.sep)) return giveToQemu(file, id, ownDir);
  await checkReachable(file, id);
  const st = await stat(file);
  if (!allows(st, id, { user: 0o400, group: 0o040, other: 0o004 })) {
    throw new FileNotAccessible(`qemu (uid ${id.uid}, gid ${id.gid}) cannot read ${file} (mode ${(st.mode & 0o777).toString(8)}): make it readable by others or the qemu group`, { file });
  }
}

/** Before a blockdev-add on a running VM: the same rules as at start. */
export async function prepareBlockdev(args: unknown, id: QemuIdentity): Promise<void> {
  const files = blockdevFiles(args);
  await Promise.all([...files.readWrite.map((f) => giveToQemu(f, id)), ...files.readOnly.map((f) => checkReadable(f, id))]);
}

/**
 * Before qemu starts: the daemon's own directories stay root's (qemu may pass,
 * not list or write, so it cannot rewrite its definition); qemu gets a run
 * directory of its own for its sockets; then every file of the plan.
 */
export async function prepareQemuFiles(files: QemuFiles & { logs: string[] }, paths: VmPaths, id: QemuIdentity, fieldOf?: FieldOf): Promise<void> {
  await chmod(paths.dir, 0o711);
  await chmod(paths.disksDir, 0o711).catch(() => {});
  await mkdir(paths.runDir, { recursive: true, mode: 0o711 });
  await chmod(paths.runDir, 0o711);
  await mkdir(paths.qemuRunDir, { recursive: true, mode: 0o700 });
  await chown(paths.qemuRunDir, id.uid, id.gid);
  await chmod(paths.qemuRunDir, 0o700);
  // qemu appends to its console log; made here so that it is the VM's, not root's.
  for (const log of files.logs) await (await open(log, "a", 0o600)).close();
  await Promise.all([
    ...[...files.readWrite, ...files.logs].map((f) => giveToQemu(f, id, paths.dir, fieldOf)),
    ...files.readOnly.map((f) => checkReadable(f, id, paths.dir)),
  ]);
}
