// Tap names, queue counts and the tap netdev in qemu's argv, as pure functions
// of the definition: what cannot be seen on this TCG-only machine (vhost under
// KVM) is checked here.
import t from "tap";
import { buildQemuArgv, type Accel } from "../../src/qemu/qemu-argv.js";
import { MAX_TAP_QUEUES, tapName, tapQueues, vmTaps } from "../../src/net/vm-taps.js";
import { vmPaths } from "../../src/store/vm-paths.js";
import { completeDefinition, vmCreateSchema } from "../../src/definition/vm-definition.js";

const uuid = "0b7c4f3e-2f7a-4c7e-9a53-0f3c3f7e2a11";
const def = (input: Record<string, unknown>) => completeDefinition(vmCreateSchema.parse({ name: "web-1", uuid, ...input }));

t.test("tap names are stable per VM and NIC, and fit in an interface name", async (t) => {
  t.equal(tapName(uuid, 0), tapName(uuid, 0));
  t.not(tapName(uuid, 0), tapName(uuid, 1));
  t.not(tapName(uuid, 0), tapName("9d3f4c1e-0000-4000-8000-000000000000", 0));
  t.match(tapName(uuid, 15), /^vmh[0-9a-f]{8}$/);
});

t.test("a queue per vCPU, capped", async (t) => {
  t.equal(tapQueues(1), 1);
  t.equal(tapQueues(4), 4);
  t.equal(tapQueues(255), MAX_TAP_QUEUES);
});

t.test("only bridge NICs get taps", async (t) => {
  const d = def({ vcpus: 3, nics: [{}, { network: { type: "bridge", bridge: "br0" } }] });
  t.same(vmTaps(d), [{ nic: 1, name: tapName(uuid, 1), bridge: "br0", queues: 3, alias: "vmhostd:web-1:1" }]);
});

t.test("bridge names are Linux interface names", async (t) => {
  for (const bridge of ["br0", "vmbr-1.100", "a_b", "x".repeat(15)]) {
    t.ok(vmCreateSchema.safeParse({ name: "a", nics: [{ network: { type: "bridge", bridge } }] }).success, bridge);
  }
  for (const bridge of ["", "x".repeat(16), "br 0", "br/0", "br:0", ".", "..", "-x\u00e9"]) {
    t.notOk(vmCreateSchema.safeParse({ name: "a", nics: [{ network: { type: "bridge", bridge } }] }).success, JSON.stringify(bridge));
  }
  t.notOk(vmCreateSchema.safeParse({ name: "a", nics: [{ network: { type: "bridge" } }] }).success, "bridge is required");
  t.notOk(vmCreateSchema.safeParse({ name: "a", nics: [{ network: { type: "user", bridge: "br0" } }] }).success, "user takes no bridge");
});

t.test("the tap netdev in qemu's argv", async (t) => {
  const netdevs = (vcpus: number, accel: Accel, vhostNet?: boolean) => {
    const d = def({ vcpus, nics: [{ network: { type: "bridge", bridge: "br0" } }, {}] });
    const argv = buildQemuArgv({ def: d, paths: vmPaths("/s", "/r", "web-1"), accel, files: { disks: {} }, vhostNet });
    return argv.filter((_, i) => argv[i - 1] === "-netdev" || argv[i - 1] === "-device").map((s) => JSON.parse(s) as Record<string, unknown>);
  };
  const [tap, nic, user] = netdevs(1, "tcg", true).filter((o) => o.driver !== "pcie-root-port");
  t.same(tap, { type: "tap", id: "net0", ifname: tapName(uuid, 0), script: "no", downscript: "no", vhost: false });
  t.notOk("mq" in nic!, "one queue: no multi-queue device");
  t.same(user, { type: "user", id: "net1" }, "a user NIC beside it is unchanged");

  t.equal(netdevs(1, "kvm", true)[0]!.vhost, true, "vhost under KVM with /dev/vhost-net");
  t.equal(netdevs(1, "kvm", false)[0]!.vhost, false, "no vhost without /dev/vhost-net");
  t.equal(netdevs(1, "kvm")[0]!.vhost, false, "no vhost unless the host was checked");

  const mq = netdevs(16, "kvm", true).filter((o) => o.driver !== "pcie-root-port");
  t.equal(mq[0]!.queues, MAX_TAP_QUEUES);
  t.match(mq[1], { driver: "virtio-net-pci", mq: true, vectors: 2 * MAX_TAP_QUEUES + 2 });
});
