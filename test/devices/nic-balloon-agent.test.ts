// NICs hot-plugged into a running guest (user and bridge), the PCIe ports they
// take, the memory balloon and the guest agent's channel, against real qemu and
// the test guest. The daemon runs in a network namespace of this test's, so the
// bridge and the taps exist there only.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import t from "tap";
import { tapName } from "../../src/net/vm-taps.js";
import { defineGuestVm, startDaemon, waitForBoot, waitForVm, consoleAfter, consoleSize, problem } from "../helpers/daemon.js";
import { checkHeldEvents } from "../helpers/event-check.js";

const ns = `vmh-dev-${randomBytes(4).toString("hex")}`;
const BRIDGE = "vmhbr0";

interface VmJson {
  uuid: string;
  state: string;
  balloon?: { actualMiB: number };
  definition: { nics: { mac: string; network: { type: string } }[]; balloon: boolean };
}

function inNs(...args: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function tapMaster(name: string): string | undefined {
  try {
    return (JSON.parse(inNs("ip", "-j", "link", "show", "dev", name)) as { master?: string }[])[0]?.master ?? "none";
  } catch {
    return undefined;
  }
}




t.before(() => {
  execFileSync("ip", ["netns", "add", ns]);
  inNs("ip", "link", "set", "lo", "up");
  inNs("ip", "link", "add", BRIDGE, "type", "bridge");
  inNs("ip", "link", "set", BRIDGE, "up");
});
t.teardown(() => {
  execFileSync("ip", ["netns", "del", ns]);
});

t.test("NICs hot-added and removed; ports run out; balloon; guest agent channel", async (t) => {
  const d = await startDaemon({ netns: ns });
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "nv", { memoryMiB: 256, nics: [{ network: { type: "user" } }] });
  await d.api.json("POST", "/v1/vms/nv/start");
  await waitForBoot(d, "nv", 1);
  const booted = (await d.api.request("GET", "/v1/vms/nv/console/log")).body.toString();
  t.match(booted, /VMH-PORT org\.qemu\.guest_agent\.0/, "the guest sees the agent's virtio-serial port by its name");
  t.match(booted, /VMH-NIC eth0 /, "and its NIC");

  // A user-mode NIC, then a bridged one.
  let off = await consoleSize(d, "nv");
  let vm = await d.api.json<VmJson>("POST", "/v1/vms/nv/nics", { network: { type: "user" } });
  const mac1 = vm.definition.nics[1]!.mac;
  await consoleAfter(d, "nv", off, new RegExp(`VMH-NIC eth1 ${mac1}`));
  t.pass("a hot-added user NIC appears as eth1 with its MAC");

  off = await consoleSize(d, "nv");
  vm = await d.api.json<VmJson>("POST", "/v1/vms/nv/nics", { network: { type: "bridge", bridge: BRIDGE } });
  const mac2 = vm.definition.nics[2]!.mac;
  await consoleAfter(d, "nv", off, new RegExp(`VMH-NIC eth2 ${mac2}`));
  const tap = tapName(vm.uuid, 2);
  t.equal(tapMaster(tap), BRIDGE, "its tap was made and put on the bridge");
  t.equal((await problem(d, "POST", "/v1/vms/nv/nics", { network: { type: "bridge", bridge: "nobr0" } })).code, "VMH_ERR_BRIDGE_NOT_FOUND", "a missing bridge → 400");
  t.equal((await problem(d, "POST", "/v1/vms/nv/nics", { mac: mac1 })).code, "VMH_ERR_DEVICE_EXISTS", "a MAC already in use → 409");
  t.same(
    await problem(d, "POST", "/v1/vms/nv/migrate", { destination: "http://127.0.0.1:9", storage: "copy" }),
    { status: 409, code: "VMH_ERR_VM_STATE" },
    "a VM with hot-plugged devices is not migrated: the destination would lay them out differently",
  );

  // Four spare ports: two NICs took two; two disks take the rest, a third finds none.
  await d.api.json("POST", "/v1/vms/nv/disks", { name: "a", sizeGiB: 0.01 });
  await d.api.json("POST", "/v1/vms/nv/disks", { name: "b", sizeGiB: 0.01 });
  t.same(await problem(d, "POST", "/v1/vms/nv/disks", { name: "c", sizeGiB: 0.01 }), { status: 409, code: "VMH_ERR_NO_FREE_PORT" }, "no free root port → 409");
  vm = await d.api.json<VmJson>("GET", "/v1/vms/nv");
  t.equal(vm.definition.nics.length, 3, "the refusal changed nothing");

  // Only the last NIC of a running VM can go (ids follow the list); by MAC or index.
  t.equal((await problem(d, "DELETE", "/v1/vms/nv/nics/0")).code, "VMH_ERR_VM_STATE", "a NIC from the middle of a running VM → 409");
  off = await consoleSize(d, "nv");
  vm = await d.api.json<VmJson>("DELETE", `/v1/vms/nv/nics/${mac2}`);
  await consoleAfter(d, "nv", off, /VMH-NIC-GONE eth2/);
  t.equal(vm.definition.nics.length, 2, "removed from the definition");
  t.equal(tapMaster(tap), undefined, "its tap is gone");

  // SIGKILL: the hot-added NIC is still the VM's, and can still be removed.
  await d.kill();
  await d.restart();
  vm = await waitForVm<VmJson>(d, "nv", (v) => v.state === "running");
  t.same(vm.definition.nics.map((n) => n.mac)[1], mac1, "after a restart the view lists the hot-added NIC");
  off = await consoleSize(d, "nv");
  await d.api.json("DELETE", "/v1/vms/nv/nics/1");
  await consoleAfter(d, "nv", off, /VMH-NIC-GONE eth1/);
  t.pass("and its hot-removal works");

  // The balloon: qemu reports the guest's memory, and a target moves it (the guest's virtio_balloon driver).
  vm = await waitForVm<VmJson>(d, "nv", (v) => v.balloon?.actualMiB === 256);
  t.same(vm.balloon, { actualMiB: 256 }, "the view shows the balloon at the VM's memory");
  const b = await d.api.json<{ targetMiB: number }>("POST", "/v1/vms/nv/balloon", { targetMiB: 160 });
  t.equal(b.targetMiB, 160);
  vm = await waitForVm<VmJson>(d, "nv", (v) => v.balloon?.actualMiB === 160, 60_000);
  t.pass("the guest gave memory back down to the target");
  t.equal((await problem(d, "POST", "/v1/vms/nv/balloon", { targetMiB: 4096 })).code, "VMH_ERR_VALIDATION", "a target above the VM's memory → 400");

  // No qemu-ga in the test guest: the answer is prompt and says so.
  const started = Date.now();
  const agent = await d.api.json<{ connected: boolean }>("GET", "/v1/vms/nv/agent");
  t.same(agent, { connected: false }, "no agent → connected: false");
  t.ok(Date.now() - started < 5_000, "answered within seconds");

  await d.api.json("POST", "/v1/vms/nv/stop");
  t.same(await d.api.json("GET", "/v1/vms/nv/agent"), { connected: false }, "a stopped VM has no agent");
  t.equal((await problem(d, "POST", "/v1/vms/nv/balloon", { targetMiB: 128 })).code, "VMH_ERR_VM_STATE", "balloon of a stopped VM → 409");
  // Stopped: any NIC may go; the definition alone changes.
  vm = await d.api.json<VmJson>("DELETE", "/v1/vms/nv/nics/0");
  t.equal(vm.definition.nics.length, 0, "a stopped VM's NIC removed from its definition");
  await checkHeldEvents(t, d, ["vm.adopted", "vm.nic-removed", "vm.balloon", "qemu.DEVICE_DELETED"]);
});
