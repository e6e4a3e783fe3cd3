// With systemd running the host, each VM's cgroup is a transient scope systemd
// knows of (as libvirt's machine scopes are), so systemd never reorganises a
// cgroup it did not make. Made over D-Bus with busctl (argv array, minimal
// environment), delegated, so the daemon writes the limits into the scope's own
// files as it does without systemd.
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { LimitsFailed } from "../errors.js";
import { execChild } from "../host/child-process.js";

export const VM_SLICE = "vmhostd.slice";

export const vmScopeName = (leaf: string): string => `vmhostd-${leaf}.scope`;

/** The busctl argv that starts the scope around `pid`. */
export function startScopeArgv(scope: string, pid: number): string[] {
  return [
    "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartTransientUnit",
    "ssa(sv)a(sa(sv))", scope, "fail",
    "6",
    "PIDs", "au", "1", String(pid),
    "Slice", "s", VM_SLICE,
    "Delegate", "b", "true",
    "CPUAccounting", "b", "true",
    "MemoryAccounting", "b", "true",
    "TasksAccounting", "b", "true",
    "0",
  ];
}

export async function startVmScope(scope: string, pid: number): Promise<void> {
  try {
    await execChild("busctl", startScopeArgv(scope, pid), { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new LimitsFailed(`cannot start systemd scope ${scope}: ${(e.stderr || e.message).trim()}`);
  }
  // The unit's job moves the process: wait until /proc shows it there.
  for (let i = 0; i < 100; i++) {
    if ((await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "")).includes(`/${scope}`)) return;
    await sleep(20);
  }
  throw new LimitsFailed(`qemu (pid ${pid}) did not arrive in systemd scope ${scope}`);
}
