// Facts about a qemu process read from /proc. A pid alone is not an identity
// (pids are recycled); pid + start time (field 22 of /proc/<pid>/stat) is.
import { readdir, readFile } from "node:fs/promises";

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

export interface QemuProcessInfo {
  pid: number;
  /** From `-name guest=<name>,...`. */
  name: string | undefined;
  uuid: string | undefined;
}

/**
 * Every qemu whose pidfile lies under `runDir`: the qemu processes launched by a
 * vmhostd with this run directory, whether or not the daemon still knows them.
 * Recognised by the `-pidfile` and `-uuid` the daemon put on their command line,
 * not by the program's name: `--qemu` may be qemu-kvm, a symlink or a wrapper.
 */
export async function findQemuProcesses(runDir: string): Promise<QemuProcessInfo[]> {
  const prefix = runDir.endsWith("/") ? runDir : `${runDir}/`;
  const pids = (await readdir("/proc")).filter((p) => /^\d+$/.test(p)).map(Number);
  const found: QemuProcessInfo[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      const argv = await readProcCmdline(pid);
      if (!argv || !argv.includes("-pidfile") || !argv.includes("-uuid")) return;
      const pidfile = argv[argv.indexOf("-pidfile") + 1];
      if (!pidfile?.startsWith(prefix) || (await readProcState(pid)) === "Z") return;
      const nameArg = argv[argv.indexOf("-name") + 1];
      found.push({
        pid,
        name: /(?:^|,)guest=([^,]+)/.exec(nameArg ?? "")?.[1],
        uuid: argv[argv.indexOf("-uuid") + 1],
      });
    }),
  );
  return found.sort((a, b) => a.pid - b.pid);
}
