// Full and incremental backups of a running guest's disk, against real qemu:
// the incremental image holds about the changed blocks only, and each chain of
// backups (incremental → ... → full, by the backing names in the images alone)
// has exactly the disk's content (qemu-img compare). The persistent dirty
// bitmap goes on across a clean stop and start, a guest reboot and a daemon
// SIGKILL; a qemu SIGKILL makes the next backup full with the reason given.
import { execFileSync } from "node:child_process";
import { stat } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { consoleAfter, consoleSize, defineShellVm, problem, startDaemon, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { backupData, scribble } from "../helpers/disk-backups.js";
import { shellRun } from "../helpers/guest-shell.js";

const VM = "bk";
const MiB = 1024 * 1024;

/** qemu-img compare of a backup chain with the disk, the guest paused meanwhile so the disk holds still. */
async function compareWithDisk(d: TestDaemon, target: string): Promise<string> {
  const disk = path.join(d.stateDir, "vms", VM, "disks/data.qcow2");
  await d.api.json("POST", `/v1/vms/${VM}/pause`);
  try {
    return execFileSync("qemu-img", ["compare", "-U", "-f", "qcow2", "-F", "qcow2", path.join(d.stateDir, "images", target), disk], { encoding: "utf8" });
  } finally {
    await d.api.json("POST", `/v1/vms/${VM}/resume`);
  }
}

async function allocated(d: TestDaemon, target: string): Promise<number> {
  return (await stat(path.join(d.stateDir, "images", target))).blocks * 512;
}

/** Waits for the shell's prompt printed after console offset `from` (a boot), then for it to answer. */
async function prompt(d: TestDaemon, from: number): Promise<void> {
  await waitForVm(d, VM, (v: { state: string }) => v.state === "running", 60_000);
  await consoleAfter(d, VM, from, /vmh# /, 60_000);
  await shellRun(d, VM, "echo P$((2+3))", /P5/, 60_000);
}

t.test("incremental backups with a persistent dirty bitmap", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/disks`, { name: "data", sizeGiB: 0.125 });
  let from = await consoleSize(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await prompt(d, from);
  await scribble(d, VM, 0, 32);

  const first = await backupData(d, VM, "full.qcow2", { mode: "incremental" });
  t.equal(first.mode, "full", "the first backup is full");
  t.match(first.fullBecause, /no earlier backup/, "and says why");
  t.ok((await allocated(d, "full.qcow2")) >= 32 * MiB, "the full backup holds the 32 MiB written");

  await scribble(d, VM, 64, 2);
  const inc1 = await backupData(d, VM, "inc1.qcow2", { mode: "incremental", since: first.backupId });
  t.equal(inc1.mode, "incremental");
  t.equal(inc1.since, first.backupId, "built on the full backup");
  const size1 = await allocated(d, "inc1.qcow2");
  t.ok(size1 >= 2 * MiB && size1 < 4 * MiB, `the incremental image holds about the 2 MiB changed (${size1} bytes)`);
  t.match(await compareWithDisk(d, "inc1.qcow2"), /Images are identical/, "inc1 → full is the disk byte for byte");

  const stale = await backupData(d, VM, "stale.qcow2", { mode: "incremental", since: first.backupId });
  t.equal(stale.mode, "full", "an incremental from an older backup than the latest is full");
  t.match(stale.fullBecause, /latest backup/);

  // A clean stop and start, and a guest reboot: qemu saved the bitmap in the image and loads it again.
  await scribble(d, VM, 80, 1);
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  await waitForVm(d, VM, (v: { state: string }) => v.state === "stopped");
  from = await consoleSize(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await prompt(d, from);
  from = await consoleSize(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/reset`);
  await prompt(d, from);
  await scribble(d, VM, 90, 1);
  const inc2 = await backupData(d, VM, "inc2.qcow2", { mode: "incremental" });
  t.equal(inc2.mode, "incremental", "still incremental after a stop, a start and a reboot");
  const size2 = await allocated(d, "inc2.qcow2");
  t.ok(size2 >= 2 * MiB && size2 < 4 * MiB, `holds the 2 MiB written around the restart (${size2} bytes)`);
  t.match(await compareWithDisk(d, "inc2.qcow2"), /Images are identical/, "inc2 → stale → full is the disk");

  // The daemon killed between backups: qemu goes on recording.
  await d.kill();
  await d.restart();
  await prompt(d, 0);
  await scribble(d, VM, 100, 1);
  const inc3 = await backupData(d, VM, "inc3.qcow2", { mode: "incremental" });
  t.equal(inc3.mode, "incremental", "still incremental after a daemon SIGKILL");
  t.match(await compareWithDisk(d, "inc3.qcow2"), /Images are identical/, "and correct");

  // qemu killed between backups: the bitmap it held was never saved.
  await scribble(d, VM, 110, 1);
  const { pid } = await d.api.json<{ pid: number }>("GET", `/v1/vms/${VM}`);
  from = await consoleSize(d, VM);
  process.kill(pid, "SIGKILL");
  await waitForVm(d, VM, (v: { state: string; pid?: number }) => v.pid !== pid, 60_000);
  if ((await d.api.json<{ state: string }>("GET", `/v1/vms/${VM}`)).state !== "running") await d.api.json("POST", `/v1/vms/${VM}/start`);
  await prompt(d, from);
  const after = await backupData(d, VM, "after-crash.qcow2", { mode: "incremental" });
  t.equal(after.mode, "full", "after a qemu SIGKILL the next backup is full");
  t.match(after.fullBecause, /inconsistent|no dirty bitmap/, `with the reason (${after.fullBecause})`);
  t.match(await compareWithDisk(d, "after-crash.qcow2"), /Images are identical/, "and correct");
  await scribble(d, VM, 5, 1);
  const inc4 = await backupData(d, VM, "inc4.qcow2", { mode: "incremental" });
  t.equal(inc4.mode, "incremental", "and the one after it incremental again");
  t.match(await compareWithDisk(d, "inc4.qcow2"), /Images are identical/);

  const listed = await d.api.json<{ backups: { id: string; mode: string; parent?: string }[] }>("GET", `/v1/vms/${VM}/disks/data/backups`);
  t.same(
    listed.backups.map((b) => b.mode),
    ["full", "incremental", "full", "incremental", "incremental", "full", "incremental"],
    "the list has every backup in order",
  );
  t.equal(listed.backups[1]!.parent, first.backupId);
  t.equal((await problem(d, "GET", `/v1/vms/${VM}/disks/nope/backups`)).code, "VMH_ERR_DEVICE_NOT_FOUND");

  // A new VM from the chain inc4 → after-crash: its own disk is the chain flattened, the same bytes as the guest's disk now.
  await d.api.json("POST", "/v1/vms", { name: "restored", memoryMiB: 64, disks: [{ name: "data", restoreFrom: "inc4.qcow2" }] });
  const restored = path.join(d.stateDir, "vms", "restored", "disks/data.qcow2");
  const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", "-f", "qcow2", restored], { encoding: "utf8" })) as { "backing-filename"?: string };
  t.notOk(info["backing-filename"], "the restored disk depends on no backup");
  await d.api.json("POST", `/v1/vms/${VM}/pause`);
  const same = execFileSync("qemu-img", ["compare", "-U", "-f", "qcow2", "-F", "qcow2", restored, path.join(d.stateDir, "vms", VM, "disks/data.qcow2")], { encoding: "utf8" });
  await d.api.json("POST", `/v1/vms/${VM}/resume`);
  t.match(same, /Images are identical/, "the restored disk is the backed-up disk byte for byte");
  t.equal((await problem(d, "POST", "/v1/vms", { name: "r2", memoryMiB: 64, disks: [{ name: "data", restoreFrom: "/etc/passwd" }] })).code, "VMH_ERR_PATH_OUTSIDE_POOL", "a restore only from a pool");
});
