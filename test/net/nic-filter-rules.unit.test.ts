// The anti-spoofing rules as a pure function of a NIC's definition, the nft
// transactions that install and remove them, the normalisation the read-back
// compare relies on, and the definition fields that feed them.
import t from "tap";
import {
  canonicalIpv6,
  chainRules,
  filterSpec,
  installScript,
  ipv6Hex,
  linkLocalFromMac,
  normalizeRule,
  removeScript,
  splitAddresses,
} from "../../src/net/nic-filter-rules.js";
import { compareFilters, type FilterTable } from "../../src/net/nic-filters.js";
import { vmCreateSchema } from "../../src/definition/vm-definition.js";

const mac = "52:54:00:12:34:56";
const tap = "vmh0a1b2c3d";

t.test("the link-local address the kernel derives from a MAC (modified EUI-64)", async (t) => {
  t.equal(linkLocalFromMac(mac), "fe80::5054:ff:fe12:3456");
  t.equal(linkLocalFromMac("02:00:00:00:00:01"), "fe80::ff:fe00:1", "the U/L bit flipped to 0, zeros compressed as nft prints them");
  t.equal(canonicalIpv6("2001:0DB8:0:0:0:0:0:10".toLowerCase()), "2001:db8::10");
  t.equal(canonicalIpv6("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1", "the longest zero run");
  t.equal(canonicalIpv6("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1", "a single zero group stays");
  t.equal(ipv6Hex("2001:db8::10"), "0x20010db8000000000000000000000010");
  t.same(splitAddresses(["203.0.113.10/24", "2001:DB8:0::10/64".toLowerCase()]), { v4: ["203.0.113.10"], v6: ["2001:db8::10"] });
});

t.test("strict: MAC, ARP, IPv4, IPv6 and ND checked, DHCP and RA servers dropped, anything else dropped", async (t) => {
  const rules = chainRules(filterSpec(tap, { mac, addresses: ["203.0.113.10/24", "2001:db8::10/64"] }));
  const drop = `counter name "${tap}" drop`;
  t.equal(rules[0], `ether saddr != ${mac} ${drop}`, "another source MAC first");
  t.ok(rules.includes(`arp saddr ether != ${mac} ${drop}`), "ARP sender MAC");
  t.ok(rules.includes(`arp saddr ip != 203.0.113.10 ${drop}`), "ARP sender IP: the address, not its /24");
  t.ok(rules.includes(`ip saddr != 203.0.113.10 ${drop}`), "IPv4 source");
  t.ok(rules.includes(`ip6 saddr != { 2001:db8::10, fe80::5054:ff:fe12:3456 } ${drop}`), "IPv6 source: declared and the MAC's link-local");
  t.ok(rules.includes(`icmpv6 type nd-neighbor-advert @th,64,128 != { 0x20010db8000000000000000000000010, 0xfe80000000000000505400fffe123456 } ${drop}`), "NA target");
  t.ok(rules.includes(`udp sport 67 ${drop}`), "DHCP server replies");
  t.ok(rules.includes(`udp sport 547 ${drop}`), "DHCPv6 server replies");
  t.ok(rules.includes(`udp dport { 68, 546 } ${drop}`), "anything to a DHCP or DHCPv6 client's port, from any source port");
  t.ok(rules.includes(`icmpv6 type { nd-router-advert, nd-redirect } ${drop}`), "RA and redirects");
  t.ok(rules.includes(`ether type != { ip, arp, ip6 } ${drop}`), "VLAN-tagged and other frames");
  t.equal(rules.at(-1), "accept");
  // The DHCP client's discovery is let through before the server rule and the source check.
  const discover = rules.indexOf("ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept");
  t.ok(discover > 0 && discover < rules.indexOf(`udp sport 67 ${drop}`));
  t.ok(rules.indexOf(`icmpv6 type { nd-router-advert, nd-redirect } ${drop}`) < rules.indexOf("ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept"), "an RA is dropped before anything is accepted");
  for (const [i, r] of rules.entries()) {
    if (r.endsWith("accept") && i < rules.length - 1) t.notMatch(r, /^(ether saddr|ip6? saddr !=)/, "no accept skips the MAC check");
  }
});

t.test("strict with no addresses: only discovery and link-local", async (t) => {
  const rules = chainRules(filterSpec(tap, { mac }));
  const drop = `counter name "${tap}" drop`;
  t.ok(rules.includes(`ether type ip ${drop}`), "IPv4 other than DHCP discovery is dropped");
  t.ok(rules.includes(`ether type arp ${drop}`), "ARP other than probes is dropped");
  t.ok(rules.includes(`ip6 saddr != fe80::5054:ff:fe12:3456 ${drop}`), "IPv6 from the link-local address only");
  t.ok(rules.includes("arp operation request arp saddr ip 0.0.0.0 accept"), "an address probe claims nothing");
});

t.test("mac and off", async (t) => {
  const mac_ = chainRules(filterSpec(tap, { mac, filtering: "mac", addresses: ["203.0.113.10/24"] }));
  t.equal(mac_[0], `ether saddr != ${mac} counter name "${tap}" drop`);
  t.notOk(mac_.some((r) => r.includes("ip saddr")), "no address rules");
  t.same(chainRules(filterSpec(tap, { mac, filtering: "off" })), ["accept"], "off: an empty chain that accepts (a tap with no chain at all is dropped)");
});

t.test("one transaction installs the base chain, the tap's chain and its map entry last", async (t) => {
  const script = installScript([filterSpec(tap, { mac })]).trim().split("\n");
  t.equal(script[0], "add table bridge vmhostd");
  t.ok(script.includes("add chain bridge vmhostd ports { type filter hook prerouting priority -300; policy accept; }"));
  t.ok(script.includes('add rule bridge vmhostd ports iifname "vmh*" counter drop'), "a vmh tap without rules is dropped");
  t.ok(script.includes(`flush chain bridge vmhostd ${tap}`), "a chain is replaced, never appended to");
  t.equal(script.at(-1), `add element bridge vmhostd taps { "${tap}" : goto ${tap} }`);
  t.equal(
    removeScript([{ tap, mapped: true, chain: true, counter: true }, { tap: "vmhffffffff", mapped: false, chain: true, counter: false }]),
    `delete element bridge vmhostd taps { "${tap}" }\ndelete chain bridge vmhostd ${tap}\ndelete chain bridge vmhostd vmhffffffff\ndelete counter bridge vmhostd ${tap}\n`,
    "only what exists is deleted; the map entry before the chain it names",
  );
  t.equal(removeScript([]), "");
});

t.test("the read-back compare", async (t) => {
  t.equal(normalizeRule("ip6 saddr != { fe80::1, 2001:db8::10 }  counter name \"x\" drop"), 'ip6 saddr != { 2001:db8::10, fe80::1 } counter name "x" drop', "set order");
  t.equal(normalizeRule("arp saddr ip != { 10.0.0.1 } drop"), "arp saddr ip != 10.0.0.1 drop", "a one-element set");
  t.equal(normalizeRule("@th,208,48 != 0x025400123456"), "@th,208,48 != 0x25400123456", "leading zeros of a raw value");
  const spec = filterSpec(tap, { mac, addresses: ["10.0.0.1/24"] });
  const good: FilterTable = {
    chains: new Map([
      ["ports", ["iifname vmap @taps", 'iifname "vmh*" counter drop']],
      [tap, chainRules(spec).map(normalizeRule)],
    ]),
    map: new Map([[tap, tap]]),
    counters: new Map([[tap, 0]]),
  };
  t.same(compareFilters(good, [spec]), []);
  t.same(compareFilters(undefined, [spec]), ["table bridge vmhostd is missing"]);
  const short = { ...good, chains: new Map(good.chains).set(tap, chainRules(spec).slice(0, -1)) };
  t.same(compareFilters(short, [spec]), [`chain ${tap} differs`]);
  const unmapped = { ...good, map: new Map<string, string>() };
  t.same(compareFilters(unmapped, [spec]), [`taps does not send ${tap} to its chain`]);
  const other = filterSpec(tap, { mac, addresses: ["10.0.0.2/24"] });
  t.same(compareFilters(good, [other]), [`chain ${tap} differs`], "another address is another ruleset");
});

t.test("the definition's NIC fields", async (t) => {
  const parse = (nic: Record<string, unknown>) => vmCreateSchema.safeParse({ name: "a", nics: [nic] });
  const br = { network: { type: "bridge", bridge: "br0" } };
  t.ok(parse({ ...br, addresses: ["203.0.113.10/24", "2001:db8::10/64"], filtering: "strict" }).success);
  const bad = (nic: Record<string, unknown>) => {
    const r = parse(nic);
    return r.success ? undefined : r.error.issues[0]!.path.join(".");
  };
  t.equal(bad({ ...br, addresses: ["203.0.113.10"] }), "nics.0.addresses.0", "a prefix is needed");
  t.equal(bad({ ...br, addresses: ["203.0.113.10/33"] }), "nics.0.addresses.0");
  t.equal(bad({ ...br, addresses: ["::ffff:1.2.3.4/128"] }), "nics.0.addresses.0", "no dotted IPv4 in IPv6");
  t.equal(bad({ ...br, filtering: "loose" }), "nics.0.filtering");
  t.equal(bad({ ...br, vlan: 4095 }), "nics.0.vlan");
  t.equal(bad({ ...br, vlan: 0 }), "nics.0.vlan");
  t.equal(bad({ ...br, trunk: [10, 10], filtering: "mac" }), "nics.0.trunk");
  t.equal(bad({ ...br, trunk: [10] }), "nics.0.trunk", "strict filtering would drop tagged frames");
  t.ok(parse({ ...br, trunk: [10, 20], filtering: "mac" }).success);
  t.equal(bad({ addresses: ["10.0.0.1/24"] }), "nics.0.addresses", "user-mode NICs have no filter");
});
