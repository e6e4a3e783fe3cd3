// A qemu is recognised by what the daemon recorded when it started it, never by
// its name: pid + start time (field 22 of /proc/<pid>/stat, so a recycled pid is
// not it) + the executable it runs (/proc/<pid>/exe's device and inode, read once
// qemu answered QMP, so a wrapper script that execs qemu is recorded as the qemu
// it became) + the VM's uuid on its command line. `--qemu /usr/libexec/qemu-kvm`,
// a symlink or a wrapper are all recognised alike.
import { readlink, stat } from "node:fs/promises";
import { readProcCmdline, readProcStartTicks, readProcState } from "./qemu-process.js";

export interface ExeIdentity {
  path: string;
  dev: number;
  ino: number;
}

export interface QemuProcessIdentity {
  pid: number;
  startTicks: number;
  /** Absent: not recorded (a record of an older daemon whose executable could not be read). */
  exe?: ExeIdentity;
  uuid: string;
}

/** What /proc says of a pid now; `exeError` when the executable cannot be read (permissions). */
export interface ObservedProcess {
  pid: number;
  startTicks?: number;
  state?: string;
  exe?: { dev: number; ino: number };
  exeError?: string;
  argv?: string[];
}

export type IdentityMatch =
  | { kind: "match" }
  /** The recorded process no longer exists (ended, or its pid now names another process). */
  | { kind: "gone"; why: string }
  /** It exists but cannot be confirmed as the recorded qemu: it must not be called protected. */
  | { kind: "unconfirmed"; why: string };

/** Pure: does the observed process prove to be the recorded qemu? */
export function matchIdentity(recorded: QemuProcessIdentity, seen: ObservedProcess): IdentityMatch {
  if (seen.startTicks === undefined || seen.state === "Z" || seen.state === "X") return { kind: "gone", why: `pid ${recorded.pid} has ended` };
  if (seen.startTicks !== recorded.startTicks) return { kind: "gone", why: `pid ${recorded.pid} is another process now (started at tick ${seen.startTicks}, not ${recorded.startTicks})` };
  if (!recorded.exe) return { kind: "unconfirmed", why: `no executable was recorded for pid ${recorded.pid}` };
  if (!seen.exe) return { kind: "unconfirmed", why: `cannot read /proc/${recorded.pid}/exe: ${seen.exeError ?? "unknown error"}` };
  if (seen.exe.dev !== recorded.exe.dev || seen.exe.ino !== recorded.exe.ino) {
    return { kind: "unconfirmed", why: `pid ${recorded.pid} runs another executable than the recorded ${recorded.exe.path}` };
  }
  if (!seen.argv) return { kind: "unconfirmed", why: `cannot read /proc/${recorded.pid}/cmdline` };
  if (!seen.argv.includes(recorded.uuid)) return { kind: "unconfirmed", why: `pid ${recorded.pid}'s command line lacks the VM's uuid` };
  return { kind: "match" };
}

export async function readExeIdentity(pid: number): Promise<ExeIdentity> {
  // stat follows the link to the very file mapped (even one since replaced on disk).
  const [st, target] = await Promise.all([stat(`/proc/${pid}/exe`), readlink(`/proc/${pid}/exe`)]);
  return { path: target, dev: st.dev, ino: st.ino };
}

export async function observeProcess(pid: number): Promise<ObservedProcess> {
  const [startTicks, state, argv, exe] = await Promise.all([
    readProcStartTicks(pid),
    readProcState(pid),
    readProcCmdline(pid),
    stat(`/proc/${pid}/exe`).then(
      (st) => ({ exe: { dev: st.dev, ino: st.ino } }),
      (err: NodeJS.ErrnoException) => ({ exeError: err.code ?? err.message }),
    ),
  ]);
  return { pid, ...(startTicks !== undefined ? { startTicks } : {}), ...(state ? { state } : {}), ...(argv ? { argv } : {}), ...exe };
}
