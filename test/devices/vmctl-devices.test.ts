// vmctl's device commands against a daemon, on a stopped VM (where they edit the
// definition) and a refusal for the balloon of a VM that does not run.
import { access } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { defineGuestVm, runVmctl, startDaemon } from "../helpers/daemon.js";
import { checkHeldEvents } from "../helpers/event-check.js";

interface VmJson {
  definition: { disks: { name: string }[]; nics: { mac: string; network: { type: string } }[] };
}

t.test("vmctl add-disk, remove-disk, add-nic, remove-nic, balloon, agent", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "cli");
  const file = path.join(d.stateDir, "vms/cli/disks/extra.qcow2");

  let r = await runVmctl(d, "add-disk", "cli", "--disk", "extra:1");
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /disk extra {2}1 GiB/, "prints the VM's devices");
  t.ok(await access(file).then(() => true, () => false), "the disk file is made");

  r = await runVmctl(d, "--json", "add-nic", "cli", "--nic", "user");
  t.equal(r.code, 0, r.stderr);
  const mac = (JSON.parse(r.stdout) as VmJson).definition.nics[0]!.mac;

  r = await runVmctl(d, "remove-nic", "cli", mac);
  t.equal(r.code, 0, r.stderr);
  r = await runVmctl(d, "--json", "remove-disk", "cli", "extra");
  t.equal(r.code, 0, r.stderr);
  const def = (JSON.parse(r.stdout) as VmJson).definition;
  t.same([def.disks, def.nics], [[], []], "both gone from the definition");
  t.notOk(await access(file).then(() => true, () => false), "the disk file is deleted");

  r = await runVmctl(d, "balloon", "cli", "128");
  t.equal(r.code, 1, "balloon of a stopped VM fails");
  t.match(r.stderr, /VMH_ERR_VM_STATE/);
  r = await runVmctl(d, "agent", "cli");
  t.equal(r.code, 0);
  t.match(r.stdout, /no guest agent answers/);
  r = await runVmctl(d, "add-disk", "cli", "--disk", "x:1", "--image", "x:y.qcow2");
  t.equal(r.code, 1, "--disk and --image together are refused");
  await checkHeldEvents(t, d, ["vm.disk-added", "vm.disk-removed", "vm.nic-added", "vm.nic-removed"]);
});
