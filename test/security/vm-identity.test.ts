// A VM's identity on a host is its own. An API caller who copies another VM's
// uuid into a create (or into an incoming migration's definition) is refused
// before anything is written; and a per-VM uid that still owns a file in a pool
// after its VM was deleted is never given to a new VM, across a daemon restart,
// so the new VM's qemu cannot open the old VM's image.
import { execFileSync } from "node:child_process";
import { access, readFile, stat } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { defineGuestVm, startDaemon, waitForBoot } from "../helpers/daemon.js";

interface VmJson {
  uuid: string;
  pid: number;
  qemuUid: number;
}

async function procUid(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^Uid:\s*(\d+)/m.exec(status)?.[1]);
}

const exists = (p: string) => access(p).then(() => true, () => false);

t.test("a uuid is one VM's on this host", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "first");
  const first = await d.api.json<VmJson>("GET", "/v1/vms/first");

  const copy = await d.api.request("POST", "/v1/vms", { name: "copy", memoryMiB: 128, uuid: first.uuid, boot: { kernel: "vmlinuz", initrd: "initrd.img" } });
  t.equal(copy.status, 409, "a create with another VM's uuid");
  t.match(JSON.parse(copy.body.toString()), { code: "VMH_ERR_UUID_IN_USE", field: "uuid", uuid: first.uuid, vm: "first" });
  t.equal((await d.api.request("GET", "/v1/vms/copy")).status, 404, "no VM was made");
  t.notOk(await exists(path.join(d.stateDir, "vms/copy")), "and nothing written");

  // The same uuid under another name, arriving as an incoming migration.
  const definition = JSON.parse(await readFile(path.join(d.stateDir, "vms/first/definition.json"), "utf8")) as Record<string, unknown>;
  const incoming = await d.api.request("POST", "/v1/incoming", { definition: { ...definition, name: "arrival" }, storage: "shared", files: {} });
  t.equal(incoming.status, 409, "an incoming VM with a uuid a VM here has");
  t.match(JSON.parse(incoming.body.toString()), { code: "VMH_ERR_UUID_IN_USE", field: "uuid" });
  t.notOk(await exists(path.join(d.stateDir, "vms/arrival")), "nothing written for it");
  const same = await d.api.request("POST", "/v1/incoming", { definition, storage: "shared", files: {} });
  t.match(JSON.parse(same.body.toString()), { code: "VMH_ERR_VM_EXISTS" }, "the very VM again is refused by its name, first");

  const other = await d.api.request("POST", "/v1/vms", { name: "other", memoryMiB: 128, boot: { kernel: "vmlinuz", initrd: "initrd.img" } });
  t.equal(other.status, 201, "a fresh uuid is fine");

  // Two creates racing with one new uuid: one wins, the other is refused.
  const uuid = "5f0e8d2a-7c1b-4e3a-9d6f-2b8c4a1e0f37";
  const racing = await Promise.all(
    ["race-a", "race-b"].map((name) => d.api.request("POST", "/v1/vms", { name, memoryMiB: 128, uuid, boot: { kernel: "vmlinuz", initrd: "initrd.img" } })),
  );
  t.same(racing.map((r) => r.status).sort(), [201, 409], "one of two concurrent creates with one uuid");
  const loser = racing.find((r) => r.status === 409)!;
  t.match(JSON.parse(loser.body.toString()), { code: "VMH_ERR_UUID_IN_USE", field: "uuid" });
});

t.test("a uid that owns a file in a pool is not handed out again", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const image = path.join(d.stateDir, "images", "handed.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"]);
  await defineGuestVm(d, "old", { disks: [{ name: "data", image: "handed.qcow2", format: "qcow2" }] });
  await d.api.json("POST", "/v1/vms/old/start");
  await waitForBoot(d, "old", 1);
  const old = await d.api.json<VmJson>("GET", "/v1/vms/old");
  t.equal((await stat(image)).uid, old.qemuUid, "the in-place image was handed to old's uid");
  await d.api.json("POST", "/v1/vms/old/stop");
  t.equal((await d.api.request("DELETE", "/v1/vms/old")).status, 204, "old is deleted");
  t.equal((await stat(image)).uid, old.qemuUid, "its pool image stays, still owned by that uid");

  await d.kill();
  await d.restart();
  await defineGuestVm(d, "fresh");
  await d.api.json("POST", "/v1/vms/fresh/start");
  await waitForBoot(d, "fresh", 1);
  const fresh = await d.api.json<VmJson>("GET", "/v1/vms/fresh");
  const recorded = Number((await readFile(path.join(d.stateDir, "vms/fresh/qemu-uid"), "utf8")).trim());
  t.not(recorded, old.qemuUid, "the new VM's recorded uid is another");
  t.equal(fresh.qemuUid, recorded);
  t.equal(await procUid(fresh.pid), recorded, "and its qemu runs as that one");
  t.ok(recorded > old.qemuUid, "allocation only moved forward");
  await d.api.json("POST", "/v1/vms/fresh/stop");
});
