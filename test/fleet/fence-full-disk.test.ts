// The fence process on a full disk: its log (stdout, a file) and its record of
// kills cannot be written, and it must still kill every `ha` qemu once the lease
// is stale, and keep doing so. /dev/full stands for the full disk (every write:
// ENOSPC); the qemus are real, idle ones (-machine none) with the command line
// the fence looks for.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { openSync, closeSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { boottimeNs } from "../../src/fleet/boottime.js";
import { FENCED_FILE, STATE_FILE, type FenceState } from "../../src/fleet/fence/fence-state.js";
import { distRoot } from "../helpers/daemon.js";

function idleQemu(runDir: string, name: string, uuid: string): ChildProcess {
  const pidfile = path.join(runDir, "vms", name, "qemu", "qemu.pid");
  return spawn("qemu-system-x86_64", ["-machine", "none", "-S", "-display", "none", "-nodefaults", "-name", `guest=${name}`, "-uuid", uuid, "-pidfile", pidfile], {
    stdio: "ignore",
  });
}

async function exitsWithin(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  const exited = new Promise<boolean>((r) => child.once("exit", () => r(true)));
  return Promise.race([exited, sleep(ms, false)]);
}

t.test("a fence whose disk is full still kills the ha qemus", async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), "vmh-fence-"));
  const runDir = path.join(root, "run");
  const dir = path.join(runDir, "fence");
  const uuid = randomUUID();
  await mkdir(path.join(runDir, "vms", "ha1", "qemu"), { recursive: true });
  await mkdir(dir, { recursive: true });
  await symlink("/dev/full", path.join(dir, FENCED_FILE));
  const spawned: ChildProcess[] = [];
  t.teardown(async () => {
    for (const c of spawned) c.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  });

  const q1 = idleQemu(runDir, "ha1", uuid);
  spawned.push(q1);
  await sleep(500);
  t.equal(q1.exitCode, null, "qemu runs");

  // The last renewal is a minute old: the lease is long gone.
  const state: FenceState = {
    leaseId: "1",
    renewedSentAtBootNs: (boottimeNs() - 60_000_000_000n).toString(),
    ttlMs: 10_000,
    marginMs: 2_000,
    runDir,
    ha: [{ name: "ha1", uuid }],
    writtenAt: new Date().toISOString(),
  };
  await writeFile(path.join(dir, STATE_FILE), JSON.stringify(state));
  const full = openSync("/dev/full", "w");
  const fence = spawn(process.execPath, [path.join(distRoot, "src/fleet/fence/fence-main.js"), "--dir", dir], { stdio: ["ignore", full, full] });
  closeSync(full);
  spawned.push(fence);

  t.ok(await exitsWithin(q1, 3_000), "the ha qemu is killed although nothing can be logged or recorded");
  t.equal(q1.signalCode, "SIGKILL");
  const q2 = idleQemu(runDir, "ha1", uuid);
  spawned.push(q2);
  t.ok(await exitsWithin(q2, 5_000), "and one started again is killed too: the fence goes on");
  t.equal(fence.exitCode, null, "the fence process is still running");
  fence.kill("SIGTERM");
  await exitsWithin(fence, 2_000);
});
