// The CD-ROM drive of a running VM: change and eject the disc while the guest
// runs (qemu's query-block, read through GET .../cdrom, shows the medium and the
// tray), each change recorded in the definition for the next start; refusals;
// a stopped VM whose definition alone changes; and a daemon restart between changes.
import { execFileSync } from "node:child_process";
import { access, copyFile, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { defineGuestVm, startDaemon, vmctlJs, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { checkHeldEvents } from "../helpers/event-check.js";
import { ensureInstaller } from "../helpers/installer.js";

interface CdromJson {
  drive: boolean;
  image: string | null;
  live?: { medium: string | null; trayOpen: boolean; locked: boolean };
}

t.test("change and eject the disc of a running VM; a stopped one; refusals; after a daemon restart", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const images = path.join(d.stateDir, "images");
  const { iso } = await ensureInstaller();
  await copyFile(iso, path.join(images, "a.iso"));
  await copyFile(iso, path.join(images, "b.iso"));
  await defineGuestVm(d, "live", { cdrom: { image: "a.iso" } });
  await d.api.json("POST", "/v1/vms/live/start");
  const boot = await waitForBoot(d, "live", 1);

  let cd = await cdrom(d, "live");
  t.equal(cd.image, "a.iso", "the definition names a.iso");
  t.equal(cd.live?.medium, path.join(images, "a.iso"), "qemu's drive holds a.iso from the start");
  t.equal(cd.live?.trayOpen, false, "tray closed");

  cd = await d.api.json<CdromJson>("POST", "/v1/vms/live/cdrom", { image: "b.iso" });
  t.equal(cd.live?.medium, path.join(images, "b.iso"), "changed live to b.iso");
  t.equal(cd.live?.trayOpen, false, "tray closed again after the change");
  t.equal(cd.image, "b.iso", "and recorded");
  t.same(await storedCdrom(d, "live"), { image: "b.iso" }, "definition.json on disk names b.iso");
  const pid = (await d.api.json<VmJson>("GET", "/v1/vms/live")).pid!;
  t.same(await openIsos(pid), ["b.iso"], "qemu closed a.iso: the old disc's node is gone");

  cd = await d.api.json<CdromJson>("DELETE", "/v1/vms/live/cdrom");
  t.same(cd, { drive: true, image: null, live: { medium: null, trayOpen: false, locked: false } }, "ejected: an empty, closed drive");
  t.same(await storedCdrom(d, "live"), {}, "definition.json keeps the drive, empty");
  cd = await d.api.json<CdromJson>("DELETE", "/v1/vms/live/cdrom");
  t.equal(cd.live?.medium, null, "ejecting an empty drive is no error");

  cd = await d.api.json<CdromJson>("POST", "/v1/vms/live/cdrom", { image: "a.iso" });
  t.equal(cd.live?.medium, path.join(images, "a.iso"), "a disc into the empty drive");

  // Refusals change nothing.
  for (const [body, status, code] of [
    [{ image: "../../../etc/passwd" }, 400, "VMH_ERR_PATH_OUTSIDE_POOL"],
    [{ image: "missing.iso" }, 400, "VMH_ERR_FILE_NOT_FOUND"],
    [{}, 400, "VMH_ERR_VALIDATION"],
    [{ image: "a.iso", extra: 1 }, 400, "VMH_ERR_VALIDATION"],
  ] as const) {
    const res = await d.api.request("POST", "/v1/vms/live/cdrom", body);
    const problem = JSON.parse(res.body.toString()) as { code: string; field?: string };
    t.equal(res.status, status, `${JSON.stringify(body)} → ${status}`);
    t.equal(problem.code, code, `${JSON.stringify(body)} → ${code}`);
  }
  t.equal((await d.api.request("POST", "/v1/vms/nope/cdrom", { image: "a.iso" })).status, 404, "unknown VM → 404");
  cd = await cdrom(d, "live");
  t.equal(cd.live?.medium, path.join(images, "a.iso"), "refused changes left the disc in place");
  t.equal(cd.image, "a.iso");

  // The guest ran on undisturbed, and no operation was left in the journal.
  await waitForBoot(d, "live", 1);
  const vm = await d.api.json<VmJson>("GET", "/v1/vms/live");
  t.equal(vm.state, "running");
  t.notOk(await exists(path.join(d.stateDir, "vms/live/operation.json")), "no journal entry left behind");
  const now = await waitForBoot(d, "live", 1);
  t.equal(now.bootId, boot.bootId, "same boot: changing discs did not reset the guest");

  // A daemon restart in between: the adopted qemu's drive is read and changed the same way.
  await d.kill();
  await d.restart();
  cd = await cdrom(d, "live");
  t.equal(cd.live?.medium, path.join(images, "a.iso"), "after a restart the live disc is read from qemu");
  cd = await d.api.json<CdromJson>("POST", "/v1/vms/live/cdrom", { image: "b.iso" });
  t.equal(cd.live?.medium, path.join(images, "b.iso"), "and changed after adoption");

  // A daemon killed in the middle of a change (its journal names the disc asked for): the next one makes it.
  await d.kill();
  const journal = { id: "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11", vm: "live", action: { kind: "change-cdrom", image: "a.iso" }, startedAt: new Date().toISOString(), done: [] };
  await writeFile(path.join(d.stateDir, "vms/live/operation.json"), JSON.stringify(journal));
  await d.restart();
  // Done once the operation has ended and the definition names the disc.
  await waitForVm<VmJson>(d, "live", (v) => !v.operation && v.definition.cdrom?.image === "a.iso", 10_000);
  cd = await cdrom(d, "live");
  t.equal(cd.live?.medium, path.join(images, "a.iso"), "an interrupted change is made again after a restart, in qemu and in the definition");
  t.same(await storedCdrom(d, "live"), { image: "a.iso" });
  t.notOk(await exists(path.join(d.stateDir, "vms/live/operation.json")), "and its journal entry is gone");

  // Stopped: only the definition changes, and the next start has it.
  await d.api.json("POST", "/v1/vms/live/stop");
  cd = await d.api.json<CdromJson>("DELETE", "/v1/vms/live/cdrom");
  t.same(cd, { drive: true, image: null }, "eject while stopped: the definition only");
  cd = await d.api.json<CdromJson>("POST", "/v1/vms/live/cdrom", { image: "a.iso" });
  t.same(cd, { drive: true, image: "a.iso" }, "insert while stopped");
  await d.api.json("POST", "/v1/vms/live/start");
  cd = await cdrom(d, "live");
  t.equal(cd.live?.medium, path.join(images, "a.iso"), "the next start has the disc the definition names");
  await d.api.json("POST", "/v1/vms/live/stop");

  // A VM without a drive: none can be added to a running qemu; a stopped one gets one.
  await defineGuestVm(d, "nodrive");
  await d.api.json("POST", "/v1/vms/nodrive/start");
  let res = await d.api.request("POST", "/v1/vms/nodrive/cdrom", { image: "a.iso" });
  t.equal(res.status, 409, "no disc into a running VM without a drive");
  t.equal((JSON.parse(res.body.toString()) as { code: string }).code, "VMH_ERR_VM_STATE");
  t.same(await cdrom(d, "nodrive"), { drive: false, image: null }, "GET: no drive");
  await d.api.json("POST", "/v1/vms/nodrive/stop");
  res = await d.api.request("DELETE", "/v1/vms/nodrive/cdrom");
  t.equal(res.status, 409, "nothing to eject without a drive");
  cd = await d.api.json<CdromJson>("POST", "/v1/vms/nodrive/cdrom", { image: "a.iso" });
  t.same(cd, { drive: true, image: "a.iso" }, "a stopped VM gets a drive with the disc");
  await checkHeldEvents(t, d, ["vm.cdrom"]);
});

t.test("vmctl: create from an ISO, show, change and eject the disc", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const { iso } = await ensureInstaller();
  await copyFile(iso, path.join(d.stateDir, "images", "a.iso"));
  await copyFile(iso, path.join(d.stateDir, "images", "b.iso"));
  const vmctl = (...args: string[]) => execFileSync(process.execPath, [vmctlJs, "--socket", d.socket, ...args], { encoding: "utf8" }).trim();
  vmctl("create", "cli", "--firmware", "uefi", "--cdrom", "a.iso", "--boot-order", "cdrom,disk", "--disk", "root:1");
  const def = (await d.api.json<VmJson>("GET", "/v1/vms/cli")).definition as unknown as Record<string, unknown>;
  t.same([def.firmware, def.cdrom, def.boot], ["uefi", { image: "a.iso" }, { order: ["cdrom", "disk"] }], "the flags made the definition");
  t.equal(vmctl("cdrom", "cli"), "cli: cdrom a.iso");
  t.equal(vmctl("cdrom", "cli", "b.iso"), "cli: cdrom b.iso");
  t.equal(vmctl("eject", "cli"), "cli: cdrom (empty)");
  t.match(vmctl("show", "cli"), /firmware\s+uefi\ncdrom\s+\(empty\)/);
});

async function cdrom(d: TestDaemon, vm: string): Promise<CdromJson> {
  return d.api.json<CdromJson>("GET", `/v1/vms/${vm}/cdrom`);
}

async function storedCdrom(d: TestDaemon, vm: string): Promise<unknown> {
  return (JSON.parse(await readFile(path.join(d.stateDir, "vms", vm, "definition.json"), "utf8")) as { cdrom?: unknown }).cdrom;
}

/** The ISOs a process has open, by name. */
async function openIsos(pid: number): Promise<string[]> {
  const fds = await readdir(`/proc/${pid}/fd`);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")));
  return targets.filter((p) => p.endsWith(".iso")).map((p) => path.basename(p)).sort();
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}
