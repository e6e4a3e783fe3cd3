// A cloud-init NoCloud seed made from the definition reaches the guest: the test
// guest (vmh.cidata=1) mounts the CD-ROM whose ISO holds user-data, as cloud-init
// would, and prints the volume label, a user-data value and meta-data's hostname.
import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { consoleAfter, consoleSize, defineGuestVm, installGuest, problem, startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";

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
  const changed = await d.api.json<{ definition: { cloudInit: { userData: string } } }>("PUT", `/v1/vms/${VM}/cloud-init`, {
    userData: `#cloud-config\nvmh_marker: ${second}\n`,
    metaData: "local-hostname: renamed\n",
  });
  t.match(changed.definition.cloudInit.userData, second, "the definition holds the new user-data");
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

  // Without cloudInit the seed and its drive go at the next start.
  await d.api.json("DELETE", `/v1/vms/${VM}/cloud-init`);
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  const plain = await waitForVm<{ state: string; argv: string[] }>(d, VM, (v) => v.state === "running");
  t.notOk(plain.argv.some((a) => a.includes("cidata.iso") || a.includes("scsi-cd")), "no seed drive any more");
  await t.rejects(stat(seed), "and no seed file");
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
});
