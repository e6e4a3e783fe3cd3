// Bridged NICs against real qemu: two guests on one Linux bridge reach each
// other, their taps are named, attached and removed as designed, and survive a
// daemon SIGKILL. The daemon runs in a network namespace this test makes, so
// the bridge, the taps and the guests' addresses exist there only.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { tapName } from "../../src/net/vm-taps.js";
import { defineGuestVm, startDaemon, vmctlJs, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { GUEST_CMDLINE } from "../helpers/guest.js";

const ns = `vmh-test-${randomBytes(4).toString("hex")}`;
const BRIDGE = "vmhbr0";
const IP = { a: "10.231.0.11", b: "10.231.0.12" } as const;

interface LinkJson {
  ifindex: number;
  flags: string[];
  master?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string; info_data?: { type?: string; multi_queue?: boolean } };
}

function inNs(...args: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** The link as `ip` shows it inside the namespace, or undefined if there is none. */
function link(name: string): LinkJson | undefined {
  try {
    return (JSON.parse(inNs("ip", "-j", "-d", "link", "show", "dev", name)) as LinkJson[])[0];
  } catch {
    return undefined;
  }
}

/** Waits for `pattern` in the console output written after byte `offset`. */
async function consoleAfter(d: TestDaemon, vm: string, offset: number, pattern: RegExp, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let text = "";
  while (Date.now() < until) {
    text = (await d.api.request("GET", `/v1/vms/${vm}/console/log?offset=${offset}`)).body.toString("utf8");
    if (pattern.test(text)) return;
    await sleep(200);
  }
  throw new Error(`console of ${vm} did not show ${pattern} within ${timeoutMs} ms; last output:\n${text.slice(-1500)}`);
}

async function consoleSize(d: TestDaemon, vm: string): Promise<number> {
  const res = await d.api.request("GET", `/v1/vms/${vm}/console/log?offset=0`);
  return Number(res.headers["x-console-next-offset"]);
}

function bridgeNic(bridge = BRIDGE): Record<string, unknown> {
  return { network: { type: "bridge", bridge } };
}

t.test("guests on a bridge", async (t) => {
  execFileSync("ip", ["netns", "add", ns]);
  let d: TestDaemon | undefined;
  t.teardown(async () => {
    // The daemon's clean-up kills its qemus; deleting the namespace takes the bridge and any tap with it.
    await d?.cleanup();
    execFileSync("ip", ["netns", "del", ns]);
  });
  inNs("ip", "link", "add", BRIDGE, "type", "bridge");
  inNs("ip", "link", "set", BRIDGE, "up");
  d = await startDaemon({ netns: ns });
  const daemon = d;
  // Each guest configures its address and pings the other's, once a second, for as long as it runs.
  const boot = (ip: string, peer: string) => ({
    kernel: "vmlinuz",
    initrd: "initrd.img",
    cmdline: `${GUEST_CMDLINE} vmh.ip=${ip}/24 vmh.ping=${peer}`,
  });

  await t.test("the definition names a bridge that exists", async (t) => {
    const tooLong = await daemon.api.request("POST", "/v1/vms", { name: "x", nics: [bridgeNic("a".repeat(16))] });
    t.equal(tooLong.status, 400);
    t.match(JSON.parse(tooLong.body.toString()), { code: "VMH_ERR_VALIDATION", field: "nics.0.network.bridge" });
    const slash = await daemon.api.request("POST", "/v1/vms", { name: "x", nics: [bridgeNic("br/0")] });
    t.match(JSON.parse(slash.body.toString()), { code: "VMH_ERR_VALIDATION", field: "nics.0.network.bridge" });
    const noType = await daemon.api.request("POST", "/v1/vms", { name: "x", nics: [{ network: { type: "vde" } }] });
    t.match(JSON.parse(noType.body.toString()), { code: "VMH_ERR_VALIDATION", field: "nics.0.network.type" });
    const missing = await daemon.api.request("POST", "/v1/vms", { name: "x", nics: [{}, bridgeNic("nosuchbr")] });
    t.equal(missing.status, 400);
    t.match(JSON.parse(missing.body.toString()), { code: "VMH_ERR_BRIDGE_NOT_FOUND", field: "nics.1.network.bridge" });
    const notBridge = await daemon.api.request("POST", "/v1/vms", { name: "x", nics: [bridgeNic("lo")] });
    t.match(JSON.parse(notBridge.body.toString()), { code: "VMH_ERR_BRIDGE_NOT_FOUND", detail: /not a Linux bridge/ });
    t.equal((await daemon.api.request("GET", "/v1/vms/x")).status, 404, "nothing was created");
  });

  await t.test("vmctl defines bridge NICs", async (t) => {
    const vmctl = (...args: string[]) =>
      execFileSync(process.execPath, [vmctlJs, "--socket", daemon.socket, ...args], { encoding: "utf8" });
    vmctl("create", "v", "--nic", "user", "--nic", `bridge:${BRIDGE}`);
    const shown = vmctl("show", "v");
    t.match(shown, /nic 0\s+52:54:00(:[0-9a-f]{2}){3} user\n/);
    t.match(shown, new RegExp(`nic 1\\s+52:54:00(:[0-9a-f]{2}){3} bridge ${BRIDGE}  filtering strict\\n`), "a bridged NIC shows its filtering");
    vmctl("delete", "v");
  });

  // Two vCPUs for a: its tap is multi-queue.
  // Filtering is strict by default: each guest may send from its declared address only.
  await defineGuestVm(daemon, "a", { vcpus: 2, nics: [{ ...bridgeNic(), addresses: [`${IP.a}/24`] }], boot: boot(IP.a, IP.b) });
  await defineGuestVm(daemon, "b", { nics: [{ ...bridgeNic(), addresses: [`${IP.b}/24`] }], boot: boot(IP.b, IP.a) });
  const uuid = {
    a: (await daemon.api.json<VmJson>("GET", "/v1/vms/a")).uuid,
    b: (await daemon.api.json<VmJson>("GET", "/v1/vms/b")).uuid,
  };
  const tap = { a: tapName(uuid.a, 0), b: tapName(uuid.b, 0) };

  await t.test("two guests reach each other through their taps", async (t) => {
    const [a, b] = await Promise.all(["a", "b"].map((n) => daemon.api.json<VmJson>("POST", `/v1/vms/${n}/start`)));
    t.equal(a!.state, "running");
    t.equal(b!.state, "running");
    for (const vm of ["a", "b"] as const) {
      t.match(tap[vm], /^vmh[0-9a-f]{8}$/, "named vmh + 8 hex digits");
      const l = link(tap[vm]);
      t.ok(l, `${tap[vm]} exists in the namespace`);
      t.equal(l?.linkinfo?.info_kind, "tun");
      t.equal(l?.linkinfo?.info_data?.type, "tap");
      t.equal(l?.master, BRIDGE, "attached to the bridge");
      t.equal(l?.ifalias, `vmhostd:${vm}:0`, "its alias names the VM and the NIC");
      t.ok(l?.flags.includes("UP"), "up");
      const qemuUid = (await daemon.api.json<{ qemuUid?: number }>("GET", `/v1/vms/${vm}`)).qemuUid;
      t.ok(qemuUid, `${vm}'s qemu runs as an unprivileged uid`);
      t.equal(Number(inNs("cat", `/sys/class/net/${tap[vm]}/owner`)), qemuUid, "the tap is made for the VM's uid");
      // Every VM's qemu runs in the qemu user's group: a tap owned by that group could be opened by any of them.
      t.equal(Number(inNs("cat", `/sys/class/net/${tap[vm]}/group`)), -1, "and for no group");
    }
    t.equal(link(tap.a)?.linkinfo?.info_data?.multi_queue, true, "a 2-vCPU VM's tap is multi-queue");
    t.equal(link(tap.b)?.linkinfo?.info_data?.multi_queue, false, "a 1-vCPU VM's is not");

    const objects = (argv: string[] | undefined) => (argv ?? []).filter((s) => s.startsWith("{")).map((s) => JSON.parse(s) as Record<string, unknown>);
    t.same(objects(a!.argv).find((o) => o.type === "tap"), { type: "tap", id: "net0", ifname: tap.a, script: "no", downscript: "no", vhost: false, queues: 2 }, "qemu opens the tap by name, no scripts, no vhost under TCG, a queue per vCPU");
    t.match(objects(a!.argv).find((o) => o.driver === "virtio-net-pci"), { netdev: "net0", mq: true, vectors: 6 }, "the NIC is multi-queue with a vector per queue pair");
    const bNetdev = objects(b!.argv).find((o) => o.type === "tap");
    t.equal(bNetdev?.ifname, tap.b);
    t.notOk("queues" in (bNetdev ?? {}), "a single queue is qemu's default");

    await consoleAfter(daemon, "a", 0, new RegExp(`VMH-PING ${IP.b} ok`));
    await consoleAfter(daemon, "b", 0, new RegExp(`VMH-PING ${IP.a} ok`));
    t.pass("each guest pings the other");

    await Promise.all(["a", "b"].map((n) => daemon.api.json<VmJson>("POST", `/v1/vms/${n}/stop`)));
    t.notOk(link(tap.a), "a's tap is gone once it is stopped");
    t.notOk(link(tap.b), "b's tap is gone once it is stopped");
    t.ok(link(BRIDGE), "the bridge is the operator's and stays");
  });

  await t.test("a daemon SIGKILL and restart leave the taps and the traffic alone", async (t) => {
    const from = { a: await consoleSize(daemon, "a"), b: await consoleSize(daemon, "b") };
    await Promise.all(["a", "b"].map((n) => daemon.api.json<VmJson>("POST", `/v1/vms/${n}/start`)));
    await consoleAfter(daemon, "a", from.a, new RegExp(`VMH-PING ${IP.b} ok`));
    await consoleAfter(daemon, "b", from.b, new RegExp(`VMH-PING ${IP.a} ok`));
    const ifindex = { a: link(tap.a)?.ifindex, b: link(tap.b)?.ifindex };

    await daemon.kill();
    await daemon.restart();
    for (const vm of ["a", "b"] as const) {
      const v = await waitForVm<VmJson>(daemon, vm, (v) => v.state === "running");
      t.equal(v.state, "running", `${vm} was re-adopted`);
      t.equal(link(tap[vm])?.ifindex, ifindex[vm], `${vm}'s tap is the very same device`);
      t.equal(link(tap[vm])?.master, BRIDGE);
    }
    const after = { a: await consoleSize(daemon, "a"), b: await consoleSize(daemon, "b") };
    await consoleAfter(daemon, "a", after.a, new RegExp(`VMH-PING ${IP.b} ok`));
    await consoleAfter(daemon, "b", after.b, new RegExp(`VMH-PING ${IP.a} ok`));
    t.pass("the guests still reach each other after the restart");
  });

  await t.test("a tap left by a qemu that died while the daemon was down is removed at adoption", async (t) => {
    const a = await daemon.api.json<VmJson>("GET", "/v1/vms/a");
    const bIndex = link(tap.b)?.ifindex;
    await daemon.kill();
    process.kill(a.pid!, "SIGKILL");
    await waitUntil(() => !link(tap.a)?.flags.includes("LOWER_UP"), "a's tap loses its carrier");
    t.ok(link(tap.a), "the tap outlives its qemu (it is persistent)");
    await daemon.restart();
    const crashed = await waitForVm<VmJson>(daemon, "a", (v) => v.state === "crashed");
    t.equal(crashed.lastExit?.reason, "crashed");
    await waitUntil(() => !link(tap.a), "a's tap is removed by the adoption");
    t.equal(link(tap.b)?.ifindex, bIndex, "b's tap, in use, is left alone");
    t.equal((await daemon.api.json<VmJson>("GET", "/v1/vms/b")).state, "running");
  });

  await t.test("a stale tap of the VM's name is replaced at start", async (t) => {
    // As a daemon killed between creating a tap and naming it would leave it: no alias, single queue.
    inNs("ip", "tuntap", "add", "dev", tap.a, "mode", "tap");
    const a = await daemon.api.json<VmJson>("POST", "/v1/vms/a/start");
    t.equal(a.state, "running");
    t.equal(link(tap.a)?.linkinfo?.info_data?.multi_queue, true, "made afresh, multi-queue");
    t.equal(link(tap.a)?.ifalias, "vmhostd:a:0");
    await Promise.all(["a", "b"].map((n) => daemon.api.json<VmJson>("POST", `/v1/vms/${n}/stop`)));
    t.notOk(link(tap.a));
    t.notOk(link(tap.b));
  });

  await t.test("a start that fails leaves no tap", async (t) => {
    // qemu refuses a kernel it cannot load, after the taps were made.
    await writeFile(path.join(daemon.stateDir, "images", "junk-kernel"), randomBytes(64 * 1024));
    await daemon.api.json("POST", "/v1/vms", { name: "c", memoryMiB: 64, boot: { kernel: "junk-kernel", initrd: "initrd.img" }, nics: [bridgeNic()] });
    const c = await daemon.api.request("POST", "/v1/vms/c/start");
    t.equal(c.status, 502, "qemu failed");
    const cTap = tapName((await daemon.api.json<VmJson>("GET", "/v1/vms/c")).uuid, 0);
    t.notOk(link(cTap), "the start's undo removed the tap");

    // The bridge went away after the VM was defined: a clear 4xx at start, and nothing made.
    inNs("ip", "link", "add", "vmhbr1", "type", "bridge");
    await defineGuestVm(daemon, "e", { nics: [{}, bridgeNic("vmhbr1")] });
    inNs("ip", "link", "del", "vmhbr1");
    const e = await daemon.api.request("POST", "/v1/vms/e/start");
    t.equal(e.status, 400);
    t.match(JSON.parse(e.body.toString()), { code: "VMH_ERR_BRIDGE_NOT_FOUND", field: "nics.1.network.bridge" });
    t.notOk(link(tapName((await daemon.api.json<VmJson>("GET", "/v1/vms/e")).uuid, 1)));
  });

  t.notMatch(daemon.log(), /cannot remove tap|left in place|left alone/, "every tap was removed when it was due");
});

async function waitUntil(ok: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (ok()) return;
    await sleep(100);
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}
