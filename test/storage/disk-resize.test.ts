// Growing a disk: live through QMP (the guest sees the new size at once) or with
// qemu-img while stopped; recorded in the definition; never shrunk.
import { execFileSync } from "node:child_process";
import { chmodSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import t from "tap";
import { startDaemon, defineGuestVm, vmctlJs, waitForBoot, waitForConsole } from "../helpers/daemon.js";
import { checkHeldEvents } from "../helpers/event-check.js";

const GiB = 1024 ** 3;

t.test("live and offline resize", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", path.join(d.stateDir, "images", "shared.qcow2"), "64M"]);
  await defineGuestVm(d, "rs", { disks: [{ name: "root", sizeGiB: 1 }, { name: "shared", image: "shared.qcow2" }] });
  await d.api.json("POST", "/v1/vms/rs/start");
  const m = await waitForBoot(d, "rs", 1);
  t.equal(m.disks.vda, GiB);

  const shrink = await d.api.request("POST", "/v1/vms/rs/disks/root/resize", { sizeGiB: 0.5 });
  t.equal(shrink.status, 400, "shrinking is refused");
  t.match(JSON.parse(shrink.body.toString()), { code: "VMH_ERR_VALIDATION", field: "sizeGiB" });
  const missing = await d.api.request("POST", "/v1/vms/rs/disks/nope/resize", { sizeGiB: 2 });
  t.equal(missing.status, 404, "an unknown disk is a 404");
  const shared = await d.api.request("POST", "/v1/vms/rs/disks/shared/resize", { sizeGiB: 2 });
  t.equal(shared.status, 400, "an image in a pool is not the VM's to resize");
  t.match(JSON.parse(shared.body.toString()), { field: "disk" });

  const vm = await d.api.json<{ state: string; definition: { disks: { name: string; sizeGiB?: number }[] } }>(
    "POST",
    "/v1/vms/rs/disks/root/resize",
    { sizeGiB: 2 },
  );
  t.equal(vm.state, "running");
  t.equal(vm.definition.disks[0]!.sizeGiB, 2, "the new size is in the definition");
  await waitForConsole(d, "rs", new RegExp(`VMH-DISK vda ${2 * GiB}\\b`), 30_000);
  t.pass("the guest sees the new size");

  await d.api.json("POST", "/v1/vms/rs/stop");
  const file = path.join(d.stateDir, "vms", "rs", "disks", "root.qcow2");
  // The stopped disk holds what its qemu wrote (metadata included), so qemu-img works on it
  // as the VM's uid: a file that uid may not write is refused, as it would not be to root.
  const vmUid = Number(readFileSync(path.join(d.stateDir, "vms", "rs", "qemu-uid"), "utf8"));
  t.equal(statSync(file).uid, vmUid, "the disk belongs to the VM's uid after a run");
  chmodSync(file, 0o400);
  const asVm = await d.api.request("POST", "/v1/vms/rs/disks/root/resize", { sizeGiB: 3 });
  t.equal(asVm.status, 500, "qemu-img did not run as root");
  t.match(JSON.parse(asVm.body.toString()), { code: "VMH_ERR_STORAGE", detail: /Permission denied/ });
  chmodSync(file, 0o600);
  execFileSync(process.execPath, [vmctlJs, "--socket", d.socket, "resize", "rs", "root", "3"]);
  const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", file], { encoding: "utf8" })) as { "virtual-size": number };
  t.equal(info["virtual-size"], 3 * GiB, "a stopped VM's disk is grown with qemu-img");
  await d.api.json("POST", "/v1/vms/rs/start");
  const m2 = await waitForBoot(d, "rs", 2);
  t.equal(m2.disks.vda, 3 * GiB, "and boots with it");
  await d.api.json("POST", "/v1/vms/rs/stop");
  await checkHeldEvents(t, d, ["vm.disk-resized"]);
});
