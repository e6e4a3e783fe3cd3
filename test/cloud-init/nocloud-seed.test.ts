// A cloud-init NoCloud seed made from the definition reaches the guest: the test
// guest (vmh.cidata=1) mounts the CD-ROM whose ISO holds user-data, as cloud-init
// would, and prints the volume label, a user-data value and meta-data's hostname.
import { randomBytes } from "node:crypto";
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { consoleAfter, consoleSize, defineGuestVm, installGuest, problem, runVmctl, startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";

const VM = "cloudy";

t.test("cloud-init NoCloud seed", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const g = await installGuest(d);
  const first = `first-${randomBytes(4).toString("hex")}`;
  await defineGuestVm(d, VM, {
    boot: { kernel: g.kernel, initrd: g.initrd, cmdline: `${g.cmdline} vmh.cidata=1` },
    cloudInit: { userData: `#cloud-config\nvmh_marker: ${first}\npackages: []\n` },
  });

  await d.api.json("POST", `/v1/vms/${VM}/start`);
  t.match(await consoleAfter(d, VM, 0, /VMH-CIDATA-LABEL \S+/), "VMH-CIDATA-LABEL cidata", "the guest finds a CD-ROM labelled cidata");
  t.match(await consoleAfter(d, VM, 0, /VMH-CIDATA vmh_marker: \S+/), `vmh_marker: ${first}`, "and reads the user-data value");
  t.match(await consoleAfter(d, VM, 0, /VMH-CIDATA-HOST \S+/), `VMH-CIDATA-HOST ${VM}`, "local-hostname defaults to the VM's name");
  await waitForBoot(d, VM, 1);
  const seed = path.join(d.stateDir, "vms", VM, "cidata.iso");
  t.ok((await stat(seed)).isFile(), "the seed lives in the VM's directory");
  const vm = await d.api.json<{ argv: string[] }>("GET", `/v1/vms/${VM}`);
  t.ok(vm.argv.some((a) => a.includes('"driver":"scsi-cd"') && a.includes('"id":"cidata0"')), "attached as a CD-ROM");
  t.ok(vm.argv.some((a) => a.includes(seed) && a.includes('"read-only":true')), "read-only");

  // A change is recorded now and made into a new seed at the next start.
  const second = `second-${randomBytes(4).toString("hex")}`;
  const userData = path.join(d.stateDir, "user-data");
  const metaData = path.join(d.stateDir, "meta-data");
  await writeFile(userData, `#cloud-config\nvmh_marker: ${second}\n`);
  await writeFile(metaData, "local-hostname: renamed\n");
  const set = await runVmctl(d, "cloud-init", VM, "--user-data", userData, "--meta-data", metaData);
  t.equal(set.code, 0, set.stderr);
  const changed = await d.api.json<{ definition: { cloudInit: { userData: string } } }>("GET", `/v1/vms/${VM}?include=cloud-init`);
  t.match(changed.definition.cloudInit.userData, second, "vmctl cloud-init puts the new user-data in the definition");
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  const offset = await consoleSize(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  t.match(await consoleAfter(d, VM, offset, /VMH-CIDATA vmh_marker: \S+/), `vmh_marker: ${second}`, "the next boot reads the new user-data");
  t.match(await consoleAfter(d, VM, offset, /VMH-CIDATA-HOST \S+/), "VMH-CIDATA-HOST renamed", "an operator's local-hostname wins");

  // Bad input names the field and changes nothing.
  t.same(await problem(d, "PUT", `/v1/vms/${VM}/cloud-init`, { userData: 5 }), { status: 400, code: "VMH_ERR_VALIDATION" }, "userData must be text");
  const big = await d.api.request("PUT", `/v1/vms/${VM}/cloud-init`, { userData: "x".repeat(70 * 1024) });
  t.equal(big.status, 400);
  t.match(JSON.parse(big.body.toString()), { field: "userData" }, "the problem names the field");
  t.same(await problem(d, "POST", "/v1/vms", { name: "bad", memoryMiB: 64, cloudInit: { userData: "x", vendorData: "y" } }), { status: 400, code: "VMH_ERR_VALIDATION" }, "unknown seed files are refused");

  // Removing the seed removes a device: not under a running qemu, whose devices the definition describes.
  t.same(await problem(d, "DELETE", `/v1/vms/${VM}/cloud-init`), { status: 409, code: "VMH_ERR_VM_STATE" }, "a running VM keeps its seed drive");
  // Without cloudInit the seed and its drive go at the next start.
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  const removed = await runVmctl(d, "cloud-init", VM, "--remove");
  t.equal(removed.code, 0, removed.stderr);
  t.notOk((await d.api.json<{ definition: { cloudInit?: unknown } }>("GET", `/v1/vms/${VM}`)).definition.cloudInit, "vmctl cloud-init --remove takes it out of the definition");
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  const plain = await waitForVm<{ state: string; argv: string[] }>(d, VM, (v) => v.state === "running");
  t.notOk(plain.argv.some((a) => a.includes("cidata.iso") || a.includes("scsi-cd")), "no seed drive any more");
  await t.rejects(stat(seed), "and no seed file");
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
});
