// Refusals a source gives before it asks anything of a destination: a VM whose
// running devices are not what its definition would give the destination's qemu.
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { deviceLayout } from "../../src/migration/device-layout.js";
import { defineGuestVm, startDaemon } from "../helpers/daemon.js";

t.test("device layout is read from -device entries", async (t) => {
  t.same(deviceLayout(["-device", '{"driver":"virtio-blk-pci","id":"disk-a","bus":"rp1","serial":"a"}', "-device", "VGA", "-m", "1"]), [
    "virtio-blk-pci disk-a rp1",
    "VGA",
  ]);
});

t.test("a VM with a hot-plugged disk is not migrated until restarted", async (t) => {
  const d = await startDaemon({ args: ["--peer-token", "refusal-test-token-0123"] });
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "plugged");
  await d.api.json<VmJson>("POST", "/v1/vms/plugged/start");
  const add = await d.api.request("POST", "/v1/vms/plugged/disks", { name: "extra", sizeGiB: 1 });
  t.equal(add.status, 201, "disk hot-plugged");
  const res = await d.api.request("POST", "/v1/vms/plugged/migrate", { destination: "http://127.0.0.1:9", storage: "copy" });
  t.equal(res.status, 409);
  t.match(JSON.parse(res.body.toString()), { code: "VMH_ERR_VM_STATE", detail: /restart it first/ });
  await d.api.json("POST", "/v1/vms/plugged/stop");
  await d.api.json("POST", "/v1/vms/plugged/start");
  const again = await d.api.request("POST", "/v1/vms/plugged/migrate", { destination: "http://127.0.0.1:9", storage: "copy" });
  t.equal(again.status, 202, "after a restart the layout matches: the migration starts (and fails at the unreachable destination)");
  const job = JSON.parse(again.body.toString()) as { id: string };
  for (let i = 0; i < 100; i++) {
    const j = await d.api.json<{ state: string; error?: { code: string } }>("GET", `/v1/jobs/${job.id}`);
    if (j.state !== "running") {
      t.equal(j.state, "failed");
      t.equal(j.error?.code, "VMH_ERR_MIGRATION");
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/plugged")).state, "running", "and the guest runs on");
});
