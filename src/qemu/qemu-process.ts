// Facts about a qemu process read from /proc. A pid alone is not an identity
// (pids are recycled); pid + start time (field 22 of /proc/<pid>/stat) is.
import { readFile } from "node:fs/promises";

export async function readProcStartTicks(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parentheses: split after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** State letter from /proc/<pid>/stat: R, S, D, T (stopped), Z (zombie), ... */
export async function readProcState(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

export async function readProcCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((s) => s.length > 0);
  } catch {
    return undefined;
  }
}

/** True when `pid` is still the very process that was started, and not a zombie. */
export async function isSameProcess(pid: number, startTicks: number): Promise<boolean> {
  const [ticks, state] = await Promise.all([readProcStartTicks(pid), readProcState(pid)]);
  return ticks === startTicks && state !== "Z" && state !== "X";
}

/** Sends a signal only to the process we launched: checks identity first. */
export async function signalProcess(pid: number, startTicks: number, signal: NodeJS.Signals): Promise<boolean> {
  if (!(await isSameProcess(pid, startTicks))) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}
