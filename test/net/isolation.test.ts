// Network isolation against real qemu: two guests on one bridge in a network
// namespace this test makes, guest A playing the neighbour that spoofs (another
// IP, a forged ARP reply, a DHCP server, a forged neighbour advertisement, a
// router advertisement) and guest B and the namespace's own address on the bridge
// the victims. Then the rules failing to install or to read back (the VM does not
// start, its tap never comes up), VLANs refused on this kernel, the repair at
// adoption and the dropped-packet counters. The guests boot once and are shared.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { chainRules, filterSpec, normalizeRule } from "../../src/net/nic-filter-rules.js";
import { tapName } from "../../src/net/vm-taps.js";
import { openConsole, type ConsoleClient } from "../helpers/console-socket.js";
import { defineGuestVm, runVmctl, startDaemon, waitForConsole, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { arpReply, neighbourAdvert, routerAdvert } from "../helpers/frames.js";
import { GUEST_CMDLINE } from "../helpers/guest.js";

const ns = `vmh-iso-${randomBytes(4).toString("hex")}`;
const BRIDGE = "vmhbr0";
const HOST = { v4: "10.232.0.1", v6: "fd00:232::1" };
const IP = { a: "10.232.0.11", b: "10.232.0.12" } as const;
const IP6 = { a: "fd00:232::11", b: "fd00:232::12" } as const;

function inNs(...args: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs commands in a guest's shell on its serial console and reads their exit status. */
class GuestShell {
  private n = 0;
  constructor(private c: ConsoleClient) {}
  /** A console ends with the daemon that served it: a restarted daemon's is opened anew. */
  reattach(c: ConsoleClient): void {
    this.c = c;
  }
  async run(cmd: string, timeoutMs = 20_000): Promise<{ code: number; out: string }> {
    const id = ++this.n;
    const from = this.c.text().length;
    // The echoed command line shows `$?`, never digits: only the answer matches.
    this.c.type(`${cmd}; echo VMH-RC-${id}=$?\n`);
    const text = await this.c.waitFor(new RegExp(`VMH-RC-${id}=\\d+`), timeoutMs, from);
    const m = new RegExp(`([\\s\\S]*)VMH-RC-${id}=(\\d+)`).exec(text)!;
    return { code: Number(m[2]), out: m[1]! };
  }
  /** True if `ping` gets an answer (up to 3 tries, 1 s each). */
  async reaches(addr: string): Promise<boolean> {
    return (await this.run(`ping -c 3 -W 1 -w 4 ${addr} >/dev/null 2>&1`)).code === 0;
  }
}

/** The MAC a neighbour table holds for an address, as `ip neigh` prints it. */
function lladdr(neighShow: string): string | undefined {
  return /lladdr ([0-9a-f:]{17})/.exec(neighShow)?.[1];
}

async function dropped(d: TestDaemon, vm: string): Promise<number> {
  const text = (await d.api.request("GET", "/metrics", undefined, 10_000)).body.toString();
  const m = new RegExp(`^vmhostd_vm_nic_filter_dropped_packets_total\\{vm="${vm}",nic="0"\\} (\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : -1;
}

t.test("network isolation", async (t) => {
  execFileSync("ip", ["netns", "add", ns]);
  let d: TestDaemon | undefined;
  const consoles: ConsoleClient[] = [];
  t.teardown(async () => {
    for (const c of consoles) c.ws.close();
    await d?.cleanup();
    execFileSync("ip", ["netns", "del", ns]);
  });
  inNs("ip", "link", "add", BRIDGE, "type", "bridge");
  inNs("ip", "link", "set", BRIDGE, "up");
  inNs("ip", "addr", "add", `${HOST.v4}/24`, "dev", BRIDGE);
  inNs("ip", "-6", "addr", "add", `${HOST.v6}/64`, "dev", BRIDGE, "nodad");
  d = await startDaemon({ netns: ns });
  const daemon = d;

  await t.test("a VLAN is refused on a kernel without bridge VLAN filtering", async (t) => {
    const br = { network: { type: "bridge", bridge: BRIDGE } };
    const vlan = await daemon.api.request("POST", "/v1/vms", { name: "v", nics: [{}, { ...br, vlan: 10 }] });
    t.equal(vlan.status, 400);
    t.match(JSON.parse(vlan.body.toString()), { code: "VMH_ERR_VLAN_UNSUPPORTED", field: "nics.1.vlan" });
    const trunk = await daemon.api.request("POST", "/v1/vms", { name: "v", nics: [{ ...br, trunk: [10, 20], filtering: "mac" }] });
    t.match(JSON.parse(trunk.body.toString()), { code: "VMH_ERR_VLAN_UNSUPPORTED", field: "nics.0.trunk" });
    t.equal((await daemon.api.request("GET", "/v1/vms/v")).status, 404, "nothing was created");
  });

  const vlanAttr = inNs("sh", "-c", `cat /sys/class/net/${BRIDGE}/bridge/vlan_filtering 2>/dev/null || echo none`).trim();
  const noVlans = vlanAttr === "none" && "this kernel has no bridge VLAN filtering (a bridge has no vlan_filtering attribute): the VLAN path is covered by the command-sequence unit test (test/net/bridge-vlan.unit.test.ts) only";
  await t.test("guests on VLANs 10 and 20 are kept apart", { skip: noVlans }, async (t) => {
    t.fail("this kernel has bridge VLAN filtering: the guest-to-guest VLAN test is still to be written for it");
  });

  const shellBoot = (ip: string) => ({ kernel: "vmlinuz", initrd: "initrd.img", cmdline: `${GUEST_CMDLINE} vmh.shell=1 vmh.ip=${ip}/24` });
  const nic = (ip: string, ip6: string) => ({ network: { type: "bridge", bridge: BRIDGE }, addresses: [`${ip}/24`, `${ip6}/64`] });
  await defineGuestVm(daemon, "a", { nics: [nic(IP.a, IP6.a)], boot: shellBoot(IP.a) });
  await defineGuestVm(daemon, "b", { nics: [nic(IP.b, IP6.b)], boot: shellBoot(IP.b) });
  await Promise.all(["a", "b"].map((n) => daemon.api.json<VmJson>("POST", `/v1/vms/${n}/start`)));
  const vms = { a: await daemon.api.json<VmJson>("GET", "/v1/vms/a"), b: await daemon.api.json<VmJson>("GET", "/v1/vms/b") };
  const mac = { a: vms.a.definition.nics[0]!.mac, b: vms.b.definition.nics[0]!.mac };
  const tap = { a: tapName(vms.a.uuid, 0), b: tapName(vms.b.uuid, 0) };
  const bridgeMac = (JSON.parse(inNs("ip", "-j", "link", "show", BRIDGE)) as { address: string }[])[0]!.address;
  await Promise.all(["a", "b"].map((n) => waitForConsole(daemon, n, /VMH-READY/, 90_000)));
  const [ca, cb] = await Promise.all(["a", "b"].map((n) => openConsole(daemon, n, "rw")));
  consoles.push(ca!, cb!);
  const A = new GuestShell(ca!);
  const B = new GuestShell(cb!);
  for (const g of [A, B]) {
    await g.run("true");
    await g.run("echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad");
  }
  await A.run(`ip -6 addr add ${IP6.a}/64 dev eth0`);
  await B.run(`ip -6 addr add ${IP6.b}/64 dev eth0`);

  await t.test("the rules read back as installed, and a guest on its own addresses reaches its neighbours", async (t) => {
    const listed = inNs("nft", "list", "chain", "bridge", "vmhostd", tap.a);
    const body = listed.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("table") && !l.startsWith("chain") && l !== "}");
    t.same(body.map(normalizeRule), chainRules(filterSpec(tap.a, vms.a.definition.nics[0]!)).map(normalizeRule), "nft list chain shows the tap's chain");
    t.ok(await A.reaches(IP.b), "A reaches B");
    t.ok(await A.reaches(HOST.v4), "A reaches the host's address on the bridge");
    t.ok(await B.reaches(IP.a), "B reaches A");
    t.ok(await A.reaches(IP6.b), "A reaches B over IPv6");
    t.ok(await B.reaches(HOST.v6), "B reaches the host over IPv6");
  });

  await t.test("A on an undeclared address, or on B's, reaches nobody; back on its own it does", async (t) => {
    const before = await dropped(daemon, "a");
    await A.run(`ip addr flush dev eth0 scope global; ip addr add 10.232.0.99/24 dev eth0`);
    t.notOk(await A.reaches(IP.b), "from an undeclared address, not B");
    t.notOk(await A.reaches(HOST.v4), "nor the host");
    await A.run(`ip addr flush dev eth0 scope global; ip addr add ${IP.b}/24 dev eth0`);
    t.notOk(await A.reaches(HOST.v4), "from B's address, not the host");
    await A.run(`ip addr flush dev eth0 scope global; ip addr add ${IP.a}/24 dev eth0; ip -6 addr add ${IP6.a}/64 dev eth0`);
    t.ok(await A.reaches(IP.b), "back on its own address, A reaches B");
    t.ok(await A.reaches(HOST.v4), "and the host");
    t.ok((await dropped(daemon, "a")) > before, "A's dropped-packet counter rose");
  });

  await t.test("a forged ARP reply from A reaches no ARP table", async (t) => {
    // B and the host learn each other's true MACs first.
    // B's ping makes the host ask for B's MAC too (the namespace has no ping of its own).
    t.ok(await B.reaches(HOST.v4));
    t.equal(lladdr((await B.run(`ip neigh show ${HOST.v4} dev eth0`)).out), bridgeMac, "B knows the host's MAC");
    t.equal(lladdr(inNs("ip", "neigh", "show", IP.b, "dev", BRIDGE)), mac.b, "the host knows B's");
    // Past the kernel's locktime (1 s), a reply would overwrite an existing entry.
    await sleep(1500);
    const toB = arpReply({ from: mac.a, senderMac: mac.a, senderIp: HOST.v4, toMac: mac.b, toIp: IP.b });
    const toHost = arpReply({ from: mac.a, senderMac: mac.a, senderIp: IP.b, toMac: bridgeMac, toIp: HOST.v4 });
    t.equal((await A.run(`vmh-rawsend eth0 ${toB} 3 && vmh-rawsend eth0 ${toHost} 3`)).code, 0, "A sent the forged replies");
    await sleep(500);
    t.equal(lladdr((await B.run(`ip neigh show ${HOST.v4} dev eth0`)).out), bridgeMac, "B's entry for the host still has the host's MAC");
    t.equal(lladdr(inNs("ip", "neigh", "show", IP.b, "dev", BRIDGE)), mac.b, "the host's entry for B still has B's MAC");
  });

  await t.test("a DHCP server in A is not heard by B", async (t) => {
    const conf = ["start 10.232.0.100", "end 10.232.0.110", "interface eth0", "lease_file /tmp/udhcpd.leases", "option subnet 255.255.255.0"];
    await A.run(`printf '%s\\n' ${conf.map((l) => `'${l}'`).join(" ")} >/tmp/udhcpd.conf; touch /tmp/udhcpd.leases; (udhcpd -f /tmp/udhcpd.conf >/dev/null 2>&1 &)`);
    t.equal((await A.run("sleep 0.5; pidof udhcpd")).code, 0, "udhcpd runs in A");
    // What A sends, seen on its tap before the bridge (and its rules) see it.
    const offers = spawn("ip", ["netns", "exec", ns, "timeout", "20", "tcpdump", "-l", "-n", "-p", "-i", tap.a, "-c", "1", "udp src port 67"], { stdio: ["ignore", "pipe", "pipe"] });
    let captured = "";
    offers.stdout.on("data", (c: Buffer) => (captured += c.toString()));
    const capturedDone = new Promise((resolve) => offers.on("close", resolve));
    await sleep(1000);
    const lease = await B.run("udhcpc -i eth0 -n -q -t 3 -T 1 -s /bin/true", 30_000);
    t.not(lease.code, 0, "B got no lease");
    t.match(lease.out, /No lease|failing/i, "udhcpc says so");
    await capturedDone;
    t.match(captured, /\.67 > .*\.68/, "A's udhcpd did answer B's discovery: the answer was dropped");
    await A.run("kill $(pidof udhcpd)");
  });

  await t.test("IPv6: a forged neighbour advertisement and a router advertisement from A are not heard", async (t) => {
    t.ok(await B.reaches(HOST.v6));
    t.equal(lladdr(inNs("ip", "-6", "neigh", "show", IP6.b, "dev", BRIDGE)), mac.b, "the host knows B's MAC");
    const ll = (await A.run("ip -6 addr show dev eth0 scope link")).out;
    const aLinkLocal = /inet6 (fe80::[0-9a-f:]+)\//.exec(ll)?.[1];
    t.ok(aLinkLocal, "A has its link-local address");
    // From A's own link-local address (which it may use): only the target gives it away.
    const na = neighbourAdvert({ from: mac.a, src: aLinkLocal!, target: IP6.b, mac: mac.a });
    const ra = routerAdvert({ from: mac.a, src: aLinkLocal!, prefix: "fd00:bad::" });
    const before = await dropped(daemon, "a");
    t.equal((await A.run(`vmh-rawsend eth0 ${na} 3 && vmh-rawsend eth0 ${ra} 3`)).code, 0, "A sent them");
    await sleep(2000);
    t.equal(lladdr(inNs("ip", "-6", "neigh", "show", IP6.b, "dev", BRIDGE)), mac.b, "the host's entry for B still has B's MAC");
    t.notMatch((await B.run("ip -6 addr show dev eth0")).out, /fd00:bad:/, "B took no address from the RA's prefix");
    t.notMatch((await B.run("ip -6 route show")).out, /default/, "nor a default route");
    t.ok((await dropped(daemon, "a")) >= before + 6, "the six frames were counted as dropped");
    t.ok(await A.reaches(IP6.b), "A's own IPv6 still works");
  });

  await t.test("the rules fail closed: a VM whose rules do not install, or read back different, does not start", async (t) => {
    // Every change of every link in the namespace while the starts run: the taps must never be up.
    const monitor = spawn("ip", ["netns", "exec", ns, "ip", "-o", "monitor", "link"], { stdio: ["ignore", "pipe", "ignore"] });
    let events = "";
    monitor.stdout.on("data", (c: Buffer) => (events += c.toString()));
    const monitorEnded = new Promise((resolve) => monitor.on("close", resolve));
    const taps: string[] = [];
    try {
      await Promise.all(
        (["install", "compare"] as const).map(async (fault) => {
          const other = await startDaemon({ netns: ns, env: { VMHOSTD_TEST_NFT_FAULT: fault } });
          try {
            await defineGuestVm(other, "c", { nics: [{ network: { type: "bridge", bridge: BRIDGE }, addresses: ["10.232.0.13/24"] }] });
            const cTap = tapName((await other.api.json<VmJson>("GET", "/v1/vms/c")).uuid, 0);
            taps.push(cTap);
            const res = await other.api.request("POST", "/v1/vms/c/start");
            t.equal(res.status, 500, `${fault}: the start fails`);
            t.match(JSON.parse(res.body.toString()), { code: "VMH_ERR_NETWORK", detail: fault === "install" ? /nft -f - failed/ : /differ from those installed/ });
            const c = await other.api.json<VmJson>("GET", "/v1/vms/c");
            t.equal(c.state, "stopped", `${fault}: the VM is stopped`);
            t.notOk(c.pid, `${fault}: no qemu was spawned`);
            t.throws(() => inNs("ip", "link", "show", cTap), `${fault}: its tap is gone`);
            t.notMatch(inNs("nft", "list", "table", "bridge", "vmhostd"), cTap, `${fault}: no rule of it is left`);
          } finally {
            await other.cleanup();
          }
        }),
      );
    } finally {
      monitor.kill();
      await monitorEnded;
    }
    for (const cTap of taps) {
      const seen = events.split("\n").filter((l) => l.includes(`${cTap}:`));
      t.ok(seen.length > 0, `ip monitor saw ${cTap} made`);
      t.notOk(seen.some((l) => /<[^>]*\bUP\b[^>]*>/.test(l)), `${cTap} was never up: it carried no packet`);
    }
    t.ok(await A.reaches(IP.b), "the other VMs' rules were left alone");
  });

  await t.test("at adoption, rules changed behind the daemon's back are repaired and those of vanished taps removed", async (t) => {
    await daemon.kill();
    inNs("nft", "flush", "chain", "bridge", "vmhostd", tap.a);
    inNs("nft", "add", "chain", "bridge", "vmhostd", "vmhdeadbeef");
    inNs("nft", "add", "element", "bridge", "vmhostd", "taps", '{ "vmhdeadbeef" : goto vmhdeadbeef }');
    await daemon.restart();
    await waitForVm<VmJson>(daemon, "a", (v) => v.state === "running");
    const [ra, rb] = await Promise.all(["a", "b"].map((n) => openConsole(daemon, n, "rw")));
    consoles.push(ra!, rb!);
    A.reattach(ra!);
    B.reattach(rb!);
    const until = Date.now() + 15_000;
    let table = "";
    while (Date.now() < until) {
      table = inNs("nft", "list", "table", "bridge", "vmhostd");
      if (!table.includes("vmhdeadbeef") && table.includes(`ether saddr != ${mac.a}`)) break;
      await sleep(200);
    }
    t.notMatch(table, /vmhdeadbeef/, "the chain of a tap that does not exist is removed");
    t.match(table, `ether saddr != ${mac.a}`, "A's emptied chain is filled again");
    t.match(daemon.log(), /NIC filters repaired at adoption/);
    await A.run(`ip addr add 10.232.0.98/24 dev eth0`);
    t.notOk((await A.run(`ping -c 2 -W 1 -I 10.232.0.98 ${HOST.v4} >/dev/null 2>&1`)).code === 0, "A spoofing is dropped again");
    await A.run(`ip addr del 10.232.0.98/24 dev eth0`);
  });

  await t.test("a hot-plugged NIC gets its rules with it, and loses them with it", async (t) => {
    const added = await daemon.api.request("POST", "/v1/vms/b/nics", { network: { type: "bridge", bridge: BRIDGE }, addresses: ["10.232.0.22/24"] });
    t.equal(added.status, 201);
    const tap1 = tapName(vms.b.uuid, 1);
    t.match(inNs("nft", "list", "chain", "bridge", "vmhostd", tap1), 'arp saddr ip != 10.232.0.22 counter name');
    const removed = await daemon.api.request("DELETE", "/v1/vms/b/nics/1");
    t.equal(removed.status, 200);
    t.notMatch(inNs("nft", "list", "table", "bridge", "vmhostd"), tap1, "its chain is gone");
    const vlan = await daemon.api.request("POST", "/v1/vms/b/nics", { network: { type: "bridge", bridge: BRIDGE }, vlan: 10 });
    t.match(JSON.parse(vlan.body.toString()), { code: "VMH_ERR_VLAN_UNSUPPORTED", field: "vlan" });
  });

  await t.test("addresses changed live take effect at once, in both directions", async (t) => {
    await B.run("ip addr add 10.232.0.13/24 dev eth0");
    const from13 = () => B.run(`ping -c 3 -W 1 -w 4 -I 10.232.0.13 ${IP.a} >/dev/null 2>&1`).then((r) => r.code === 0);
    t.notOk(await from13(), "an undeclared second address is dropped");
    const more = await daemon.api.request("PATCH", "/v1/vms/b/nics/0", { addresses: [`${IP.b}/24`, "10.232.0.13/24", `${IP6.b}/64`] });
    t.equal(more.status, 200);
    t.match(JSON.parse(more.body.toString()), { definition: { nics: [{ addresses: [`${IP.b}/24`, "10.232.0.13/24", `${IP6.b}/64`] }] } }, "recorded");
    t.match((await runVmctl(daemon, "show", "b")).stdout, /nic 0 .* filtering strict {2}10\.232\.0\.12\/24 10\.232\.0\.13\/24 fd00:232::12\/64\n/, "vmctl show lists them");
    t.ok(await from13(), "declared, it works at once");
    const back = await runVmctl(daemon, "nic-filter", "b", "0", "--address", `${IP.b}/24`, "--address", `${IP6.b}/64`);
    t.equal(back.code, 0, `vmctl nic-filter: ${back.stderr}`);
    t.notOk(await from13(), "taken back, it is dropped again");
    t.ok(await B.reaches(IP.a), "B's own address still works");
    const bad = await daemon.api.request("PATCH", "/v1/vms/b/nics/0", { addresses: ["10.232.0.13"] });
    t.match(JSON.parse(bad.body.toString()), { code: "VMH_ERR_VALIDATION", field: "addresses.0" });
    await B.run("ip addr del 10.232.0.13/24 dev eth0");
  });

  await t.test("stopping the VMs removes their rules", async (t) => {
    await Promise.all(["a", "b"].map((n) => daemon.api.json<VmJson>("POST", `/v1/vms/${n}/stop`)));
    const table = inNs("nft", "list", "table", "bridge", "vmhostd");
    t.notMatch(table, tap.a);
    t.notMatch(table, tap.b);
  });
});
