// Files the daemon opens or creates itself, checked at the moment of use rather
// than when the request came in: between the two, a directory on the way can be
// swapped for a symlink that points out of the pools. Each file is opened with
// O_NOFOLLOW (no symlink at the last step), and what the kernel actually opened,
// as /proc/self/fd names it, must be the path that was just resolved inside a
// pool; anything done to the file after that goes through the open descriptor.
import { constants } from "node:fs";
import { lstat, open, readlink, realpath, rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { FileExists, FileNotFound, PathOutsidePool, StorageFailed, UnsafeImage } from "../errors.js";
import type { StoragePools } from "./storage-pools.js";

export interface FileIdentity {
  dev: number;
  ino: number;
}

export interface OpenedFile extends FileIdentity {
  handle: FileHandle;
  /** The path the kernel opened, symlinks resolved. */
  path: string;
}

/** Where an open descriptor's file really is. */
export async function openedPath(handle: FileHandle): Promise<string> {
  return readlink(`/proc/self/fd/${handle.fd}`);
}

/** `file` with its directory resolved now (symlinks and all), the name itself left as is. */
async function resolveDirNow(file: string, field: string): Promise<string> {
  const dir = await realpath(path.dirname(file)).catch(() => undefined);
  if (dir === undefined) throw new FileNotFound(`${field}: the directory of ${file} does not exist`, { field });
  return path.join(dir, path.basename(file));
}

/**
 * Creates `file` (exclusively: it must not exist, not even as a dangling link)
 * inside a pool, its directory resolved right now. The caller writes through
 * the handle and closes it.
 */
export async function createInPool(pools: StoragePools, file: string, field: string): Promise<OpenedFile> {
  const target = await resolveDirNow(file, field);
  if (!(await pools.poolOfRealPath(target))) throw new PathOutsidePool(`${field}: ${file} resolves outside every storage pool`, { field });
  let handle: FileHandle;
  try {
    handle = await open(target, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "EEXIST" || e.code === "ELOOP") throw new FileExists(`${field}: ${file} already exists`, { field });
    throw new StorageFailed(`${field}: cannot create ${file}: ${e.message}`, { field });
  }
  const st = await handle.stat();
  const opened = await openedPath(handle);
  if (opened !== target || !(await pools.poolOfRealPath(opened))) {
    // A directory was swapped between the check and the open: the file made elsewhere is ours (O_EXCL), so it goes.
    await handle.close();
    await removeIfSame(opened, st);
    throw new PathOutsidePool(`${field}: ${file} moved outside the storage pools while it was being created`, { field });
  }
  return { handle, path: target, dev: st.dev, ino: st.ino };
}

/**
 * Opens an existing file without following a symlink at any step that changed
 * since its directory was resolved (here, just before the open).
 */
export async function openExisting(file: string, field: string, flags = constants.O_RDONLY): Promise<OpenedFile> {
  const target = await resolveDirNow(file, field);
  let handle: FileHandle;
  try {
    handle = await open(target, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ELOOP") throw new UnsafeImage(field, `${file} is a symbolic link`);
    throw new FileNotFound(`${field}: cannot open ${file}: ${e.message}`, { field });
  }
  const opened = await openedPath(handle).catch(() => "");
  if (opened !== target) {
    await handle.close();
    throw new UnsafeImage(field, `${file} changed while it was being opened`);
  }
  const st = await handle.stat();
  return { handle, path: target, dev: st.dev, ino: st.ino };
}

/** Removes a file the daemon made, only if the name still holds that very file. */
export async function removeIfSame(file: string, id: FileIdentity): Promise<void> {
  const st = await lstat(file).catch(() => undefined);
  if (st && st.isFile() && st.dev === id.dev && st.ino === id.ino) await rm(file, { force: true });
}
