// The runtime record of a running qemu: what the daemon needs to find it again
// after its own restart (pid plus the process start time, so a recycled pid is
// never mistaken for our qemu) and what an operator wants to see (argv).
import { mkdir, readFile } from "node:fs/promises";
import { z } from "zod";
import { removeDurably, writeJsonAtomic } from "./atomic-file.js";
import type { VmPaths } from "./vm-paths.js";

export const runtimeRecordSchema = z.object({
  pid: z.number().int().positive(),
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot. Pid + this identifies one process. */
  procStartTicks: z.number().int().nonnegative(),
  uuid: z.string(),
  argv: z.array(z.string()),
  accel: z.enum(["kvm", "tcg"]),
  startedAt: z.string(),
  qemuVersion: z.string().optional(),
  /**
   * The executable qemu runs, read from /proc/<pid>/exe once it answered QMP (a
   * wrapper has exec'd it by then): with pid, start time and uuid, how the fence
   * recognises it. Absent in records of older daemons until adoption reads it.
   */
  exe: z.object({ path: z.string(), dev: z.number().int(), ino: z.number().int() }).optional(),
  /** The uid and gid qemu runs as (absent: root). */
  uid: z.number().int().nonnegative().optional(),
  gid: z.number().int().nonnegative().optional(),
});
export type RuntimeRecord = z.infer<typeof runtimeRecordSchema>;

export async function writeRuntimeRecord(paths: VmPaths, rec: RuntimeRecord): Promise<void> {
  await mkdir(paths.runDir, { recursive: true, mode: 0o755 });
  await writeJsonAtomic(paths.runtime, rec);
}

export async function readRuntimeRecord(paths: VmPaths): Promise<RuntimeRecord | undefined> {
  let text: string;
  try {
    text = await readFile(paths.runtime, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  return runtimeRecordSchema.parse(JSON.parse(text));
}

export async function removeRuntimeRecord(paths: VmPaths): Promise<void> {
  await removeDurably(paths.runtime);
}

/** Why the last run of a VM ended; kept in the state directory so it outlives a host reboot. */
export const lastExitSchema = z.object({
  at: z.string(),
  /** guest-shutdown, host-stop, crashed, ... */
  reason: z.string(),
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  detail: z.string().optional(),
});
export type LastExit = z.infer<typeof lastExitSchema>;

export async function writeLastExit(paths: VmPaths, exit: LastExit): Promise<void> {
  await writeJsonAtomic(paths.lastExit, exit);
}

/** Removing needs no free space: what is done when a new last exit cannot be written. */
export async function removeLastExit(paths: VmPaths): Promise<void> {
  await removeDurably(paths.lastExit);
}

export async function readLastExit(paths: VmPaths): Promise<LastExit | undefined> {
  try {
    return lastExitSchema.parse(JSON.parse(await readFile(paths.lastExit, "utf8")));
  } catch {
    return undefined;
  }
}
