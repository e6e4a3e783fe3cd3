// A daemon SIGKILLed in the middle of a hot-plug: on restart the journal entry it
// left is settled by what qemu has. A disk whose device made it into qemu is kept
// and recorded; one whose device never did is undone (its new file removed).
import { execFileSync } from "node:child_process";
import { chownSync } from "node:fs";
import { access, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { QmpClient } from "../../src/qmp/qmp-client.js";
import { defineGuestVm, startDaemon, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";

interface VmJson {
  state: string;
  definition: { disks: { name: string }[] };
}

async function until(ok: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok()) && Date.now() < end) await sleep(100);
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

function journal(action: Record<string, unknown>, done: string[], facts: Record<string, unknown>): string {
  return JSON.stringify({ id: "test", vm: "rc", action, startedAt: new Date().toISOString(), done, facts });
}

function blankDisk(name: string): Record<string, unknown> {
  return { name, sizeGiB: 0.0625, format: "qcow2", bus: "virtio-blk", cache: "none" };
}

async function consoleAfter(d: TestDaemon, offset: number, pattern: RegExp): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    const text = (await d.api.request("GET", `/v1/vms/rc/console/log?offset=${offset}`)).body.toString("utf8");
    if (pattern.test(text)) return;
    await sleep(200);
  }
  throw new Error(`console did not show ${pattern}`);
}

t.test("a hot-plug cut short by SIGKILL is finished or rolled back on restart", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "rc");
  const { qemuUid } = await d.api.json<{ qemuUid: number }>("POST", "/v1/vms/rc/start");
  await waitForBoot(d, "rc", 1);
  const disks = path.join(d.stateDir, "vms/rc/disks");
  const journalFile = path.join(d.stateDir, "vms/rc/operation.json");

  // Killed after device_add, before the definition was written: kept.
  await d.kill();
  const fwd = path.join(disks, "fwd.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", fwd, "64M"]);
  // As the daemon would have: the file is the VM's before its qemu opens it.
  chownSync(fwd, qemuUid, -1);  const qmp = await QmpClient.connect(path.join(d.runDir, "vms/rc/qemu/qmp.sock"));
  await qmp.execute("blockdev-add", { driver: "file", "node-name": "f-fwd", filename: fwd });
  await qmp.execute("blockdev-add", { driver: "qcow2", "node-name": "d-fwd", file: "f-fwd" });
  await qmp.execute("device_add", { driver: "virtio-blk-pci", id: "disk-fwd", drive: "d-fwd", serial: "fwd", bus: "rp2" });
  qmp.close();
  await writeFile(journalFile, journal({ kind: "add-disk", disk: blankDisk("fwd") }, ["create-file", "plug"], { live: true }));
  await d.restart();
  let vm = await waitForVm<VmJson>(d, "rc", (v) => v.definition.disks.some((x) => x.name === "fwd"));
  t.equal(vm.state, "running", "the guest ran on");
  await until(async () => !(await exists(journalFile)));
  t.notOk(await exists(journalFile), "the journal entry is settled");
  const off = Number((await d.api.request("GET", "/v1/vms/rc/console/log")).headers["x-console-next-offset"]);
  vm = await d.api.json<VmJson>("DELETE", "/v1/vms/rc/disks/fwd");
  await consoleAfter(d, off, /VMH-DISK-GONE vd[a-z]/);
  t.same(vm.definition.disks, [], "the recovered disk can be hot-removed");
  t.notOk(await exists(fwd), "and its file goes with it");

  // Killed after the file was made, before qemu had the device: undone.
  await d.kill();
  const ghost = path.join(disks, "ghost.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", ghost, "64M"]);
  await writeFile(journalFile, journal({ kind: "add-disk", disk: blankDisk("ghost") }, ["create-file"], { live: true }));
  await d.restart();
  await until(async () => !(await exists(ghost)) && !(await exists(journalFile)));
  t.notOk(await exists(journalFile), "the journal entry is settled");
  t.notOk(await exists(ghost), "the half-added disk's file is removed");
  vm = await d.api.json<VmJson>("GET", "/v1/vms/rc");
  t.same(vm.definition.disks, [], "and the definition never got it");
  t.equal(vm.state, "running");
});
