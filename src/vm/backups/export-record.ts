// A VM's pull-mode exports, in exports.json in its directory: per disk, the
// point-in-time image the export serves, the qemu-nbd serving it (pid and its
// start time in ticks, so a reused pid is not taken for it) and where it listens.
// Written once the export serves, removed once it has ended: a record whose
// server is gone (host reboot, a kill) names only files to clean up.
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { writeJsonAtomic } from "../../store/atomic-file.js";
import type { VmPaths } from "../../store/vm-paths.js";

/** The name of the bitmap published on an export: `qemu:dirty-bitmap:vmh-export`. */
export const EXPORT_BITMAP = "vmh-export";

export const exportEntrySchema = z.strictObject({
  id: z.string(),
  disk: z.string(),
  image: z.string(),
  /** Where it listens: a Unix socket, or TCP with TLS. */
  socket: z.string().optional(),
  tcp: z.strictObject({ host: z.string(), port: z.number().int() }).optional(),
  /** qemu-nbd's pid file: how an unrecorded server is found again. */
  pidFile: z.string(),
  exportName: z.string(),
  bitmap: z.string().optional(),
  pid: z.number().int(),
  startTicks: z.number().int(),
  createdAt: z.string(),
});
export type ExportEntry = z.output<typeof exportEntrySchema>;

const recordSchema = z.strictObject({ exports: z.array(exportEntrySchema) });

export const exportRecordFile = (paths: VmPaths): string => path.join(paths.dir, "exports.json");
/** The point-in-time images, beside the VM's disks (they are as big as a disk's allocated data). */
export const exportImageDir = (paths: VmPaths): string => path.join(paths.dir, "exports");
/** The sockets: a directory only the server's uid and the daemon's group may enter. */
export const exportSocketDir = (paths: VmPaths): string => path.join(paths.runDir, "exports");

export async function readExports(paths: VmPaths): Promise<ExportEntry[]> {
  const text = await readFile(exportRecordFile(paths), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  return text === undefined ? [] : recordSchema.parse(JSON.parse(text)).exports;
}

export async function writeExports(paths: VmPaths, exports: ExportEntry[]): Promise<void> {
  if (exports.length === 0) await rm(exportRecordFile(paths), { force: true });
  else await writeJsonAtomic(exportRecordFile(paths), { exports });
}
