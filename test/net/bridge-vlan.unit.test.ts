// The exact `bridge vlan` commands a NIC's VLANs become (this is how the VLAN path
// is verified: these machines' kernels have no bridge VLAN filtering), and the
// probe that refuses VLANs on such a kernel.
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { bridgeVlanFiltering, vlanCommands, vlanRanges } from "../../src/net/bridge-vlan.js";

const tap = "vmh0a1b2c3d";

t.test("an access port: VLAN 1 removed, the VLAN as PVID and untagged", async (t) => {
  t.same(vlanCommands(tap, { vlan: 10 }), [
    ["vlan", "del", "dev", tap, "vid", "1"],
    ["vlan", "add", "dev", tap, "vid", "10", "pvid", "untagged"],
  ]);
  t.same(vlanCommands(tap, { vlan: 1 }).at(-1), ["vlan", "add", "dev", tap, "vid", "1", "pvid", "untagged"], "VLAN 1 as access: added back after the removal");
});

t.test("a trunk: VLAN 1 removed, the tagged VLANs as ranges, a native VLAN last", async (t) => {
  t.same(vlanCommands(tap, { trunk: [20, 10, 11, 12, 4094] }), [
    ["vlan", "del", "dev", tap, "vid", "1"],
    ["vlan", "add", "dev", tap, "vid", "10-12"],
    ["vlan", "add", "dev", tap, "vid", "20"],
    ["vlan", "add", "dev", tap, "vid", "4094"],
  ]);
  t.same(vlanCommands(tap, { trunk: [30], vlan: 5 }).at(-1), ["vlan", "add", "dev", tap, "vid", "5", "pvid", "untagged"]);
  t.same(vlanCommands(tap, {}), [], "no VLAN: the port is left as the bridge made it");
  t.same(vlanRanges([3, 1, 2, 2, 7]), ["1-3", "7"]);
});

t.test("the probe reads the bridge's vlan_filtering, and remembers a kernel without it", async (t) => {
  const sys = await mkdtemp(path.join(os.tmpdir(), "vmh-sysfs-"));
  t.teardown(() => import("node:fs/promises").then((f) => f.rm(sys, { recursive: true, force: true })));
  for (const [br, v] of [["on0", "1"], ["off0", "0"]] as const) {
    await mkdir(path.join(sys, br, "bridge"), { recursive: true });
    await writeFile(path.join(sys, br, "bridge", "vlan_filtering"), v + "\n");
  }
  t.equal(await bridgeVlanFiltering("on0", sys), "on");
  t.equal(await bridgeVlanFiltering("off0", sys), "off");
  await mkdir(path.join(sys, "old0", "bridge"), { recursive: true });
  await writeFile(path.join(sys, "old0", "bridge", "stp_state"), "0\n");
  t.equal(await bridgeVlanFiltering("old0", sys), "unsupported", "a bridge without the attribute: the kernel lacks it");
  t.equal(await bridgeVlanFiltering("on0", sys), "unsupported", "cached: not probed again");
});
