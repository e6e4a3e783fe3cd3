// Disks hot-plugged into a running guest and taken out again, against real qemu:
// the guest sees them come and go (its VMH-DISK markers), data on an image
// survives a removal and a re-add, a guest slow to let go leaves the removal
// pending (504, then 409 for a second try, then finished on its own), and a
// daemon SIGKILL leaves hot-added disks in the VM's view, its definition and the
// next start's argv.
import { execFileSync } from "node:child_process";
import { access, readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { defineGuestVm, startDaemon, waitForBoot, waitForVm, consoleAfter, consoleSize, problem } from "../helpers/daemon.js";

interface VmJson {
  state: string;
  argv?: string[];
  removalPending?: string[];
  definition: { disks: { name: string; image?: string; sizeGiB?: number }[] };
}




const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

t.test("hot-add and hot-remove disks of a running guest; pending removals; a daemon SIGKILL in between", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const images = path.join(d.stateDir, "images");
  const data = path.join(images, "data.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", data, "64M"]);
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 0 1M", data], { stdio: "ignore" });
  await defineGuestVm(d, "hp");
  await d.api.json("POST", "/v1/vms/hp/start");
  await waitForBoot(d, "hp", 1);

  // An image from the pool: the guest sees a new virtio disk.
  let off = await consoleSize(d, "hp");
  let res = await d.api.request("POST", "/v1/vms/hp/disks", { name: "data", image: "data.qcow2" });
  t.equal(res.status, 201, "disk added: 201");
  const added = await consoleAfter(d, "hp", off, /VMH-DISK (vd[a-z]) 67108864/);
  const dev = added.split(" ")[1]!;
  let vm = await d.api.json<VmJson>("GET", "/v1/vms/hp");
  t.same(vm.definition.disks.map((x) => x.name), ["data"], "the definition lists it");
  t.equal((await problem(d, "POST", "/v1/vms/hp/disks", { name: "data", sizeGiB: 1 })).code, "VMH_ERR_DEVICE_EXISTS", "same name twice → 409");

  // A guest that does not answer (its vCPUs paused) cannot let go: a 1 s deadline runs out.
  off = await consoleSize(d, "hp");
  await d.api.json("POST", "/v1/vms/hp/pause");
  let p = await problem(d, "DELETE", "/v1/vms/hp/disks/data?timeoutSec=1");
  t.same(p, { status: 504, code: "VMH_ERR_REMOVAL_TIMEOUT" }, "guest not done in 1 s → 504");
  vm = await d.api.json<VmJson>("GET", "/v1/vms/hp");
  t.same(vm.removalPending, ["disk-data"], "the view shows the removal pending");
  p = await problem(d, "DELETE", "/v1/vms/hp/disks/data");
  t.same(p, { status: 409, code: "VMH_ERR_REMOVAL_PENDING" }, "a second DELETE while pending → 409");
  await d.api.json("POST", "/v1/vms/hp/resume");
  await consoleAfter(d, "hp", off, new RegExp(`VMH-DISK-GONE ${dev}`));
  vm = await waitForVm<VmJson>(d, "hp", (v) => v.definition.disks.length === 0 && !v.removalPending);
  t.pass("once the guest let go, the removal finished by itself");
  t.equal(vm.state, "running");
  const read = execFileSync("qemu-io", ["-f", "qcow2", "-c", "read -P 0xab 0 1M", data], { encoding: "utf8" });
  t.match(read, /read 1048576\/1048576 bytes/, "the data written before is intact, and qemu let go of the file");
  t.ok(await exists(data), "a pool image stays after its removal");

  // Added again: the same data is there for the guest.
  off = await consoleSize(d, "hp");
  await d.api.json("POST", "/v1/vms/hp/disks", { name: "data", image: "data.qcow2" });
  await consoleAfter(d, "hp", off, /VMH-DISK vd[a-z] 67108864/);

  // A blank disk of the VM's own.
  off = await consoleSize(d, "hp");
  await d.api.json("POST", "/v1/vms/hp/disks", { name: "blank", sizeGiB: 1 });
  await consoleAfter(d, "hp", off, /VMH-DISK vd[a-z] 1073741824/);
  const blankFile = path.join(d.stateDir, "vms/hp/disks/blank.qcow2");
  t.ok(await exists(blankFile), "its qcow2 is in the VM's directory");

  // Daemon SIGKILL: the hot-added disks are part of the running qemu and the definition.
  const pid = (await d.api.json<{ pid: number }>("GET", "/v1/vms/hp")).pid;
  await d.kill();
  await d.restart();
  vm = await waitForVm<VmJson>(d, "hp", (v) => v.state === "running");
  t.equal((vm as unknown as { pid: number }).pid, pid, "the same qemu, adopted");
  t.same(vm.definition.disks.map((x) => x.name), ["data", "blank"], "after the restart the definition lists both");
  const stored = JSON.parse(await readFile(path.join(d.stateDir, "vms/hp/definition.json"), "utf8")) as VmJson["definition"];
  t.same(stored.disks.map((x) => x.name), ["data", "blank"], "definition.json too");
  off = await consoleSize(d, "hp");
  vm = await d.api.json<VmJson>("DELETE", "/v1/vms/hp/disks/blank");
  t.same(vm.definition.disks.map((x) => x.name), ["data"], "a hot-removal after the restart works");
  await consoleAfter(d, "hp", off, /VMH-DISK-GONE vd[a-z]/);
  t.notOk(await exists(blankFile), "the VM's own disk file is deleted with it");
  t.notOk(await exists(path.join(d.stateDir, "vms/hp/operation.json")), "no journal entry left behind");

  // Stopped: the endpoints only edit the definition; the next start has the disk in its argv.
  await d.api.json("POST", "/v1/vms/hp/stop");
  await d.api.json("POST", "/v1/vms/hp/disks", { name: "cold", sizeGiB: 1 });
  t.ok(await exists(path.join(d.stateDir, "vms/hp/disks/cold.qcow2")), "a stopped VM's new disk is created");
  vm = await d.api.json<VmJson>("POST", "/v1/vms/hp/start");
  t.ok(vm.argv?.some((a) => a.includes('"id":"disk-data"')), "the next start's argv has the hot-added disk");
  t.ok(vm.argv?.some((a) => a.includes('"id":"disk-cold"')), "and the one added while stopped");
  const boot = await waitForBoot(d, "hp", 2);
  t.equal(Object.keys(boot.disks).length, 2, "the guest boots with both disks");

  // A removal still pending when qemu ends is finished all the same: it was asked for.
  await d.api.json("POST", "/v1/vms/hp/pause");
  t.equal((await problem(d, "DELETE", "/v1/vms/hp/disks/cold?timeoutSec=1")).status, 504, "pending again");
  await d.api.json("POST", "/v1/vms/hp/stop");
  // Settled: the removal's operation (definition, then the file) is over, not just recorded.
  vm = await waitForVm<VmJson>(d, "hp", (v) => v.definition.disks.length === 1 && !v.removalPending && !(v as { operation?: unknown }).operation);
  t.same(vm.definition.disks.map((x) => x.name), ["data"], "stopping the VM finished the pending removal");
  t.notOk(await exists(path.join(d.stateDir, "vms/hp/disks/cold.qcow2")), "and deleted its file");

  t.equal((await problem(d, "DELETE", "/v1/vms/hp/disks/nope")).code, "VMH_ERR_DEVICE_NOT_FOUND", "unknown disk → 404");
  t.equal((await problem(d, "POST", "/v1/vms/hp/disks", { name: "x" })).code, "VMH_ERR_VALIDATION", "no size or image → 400");
});
