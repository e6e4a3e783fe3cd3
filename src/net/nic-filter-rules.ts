// The nftables rules that keep a guest to its own MAC and addresses, as a pure
// function of the NIC's definition: what is installed, and what the read-back is
// compared with. Everything lives in the daemon's own table (`bridge vmhostd`): a
// base chain on the bridge's prerouting hook sends each tap's frames to a chain
// named after the tap, through a verdict map; a frame from any other `vmh*` tap
// (one whose rules are not there) is dropped, so a missing chain fails closed.
// The bridge family sees frames before they are bridged or delivered to the host,
// so no br_netfilter is needed.
import type { NicDefinition } from "../definition/vm-definition.js";

export const NFT_FAMILY = "bridge";
export const NFT_TABLE = "vmhostd";
/** The verdict map: tap name → `goto` the tap's chain. */
export const TAP_MAP = "taps";
/** The base chain every frame entering the bridge passes. */
export const PORTS_CHAIN = "ports";
/** Runs before anything else on the bridge hook (dstnat is -300). */
const PORTS_PRIORITY = -300;

export type Filtering = "strict" | "mac" | "off";

export interface NicFilterSpec {
  tap: string;
  mac: string;
  filtering: Filtering;
  /** As in the definition: CIDR strings; only the address part is the guest's. */
  addresses: string[];
}

export function filterSpec(tap: string, nic: Pick<NicDefinition, "mac" | "filtering" | "addresses">): NicFilterSpec {
  return { tap, mac: nic.mac, filtering: nic.filtering ?? "strict", addresses: nic.addresses ?? [] };
}

/** The address part of each CIDR, split by family, in the definition's order. */
export function splitAddresses(addresses: string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const cidr of addresses) {
    const addr = cidr.split("/")[0]!;
    if (addr.includes(":")) v6.push(canonicalIpv6(addr));
    else v4.push(addr);
  }
  return { v4, v6 };
}

/** The modified EUI-64 link-local address a kernel derives from the MAC (the U/L bit flipped, ff:fe inserted). */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(":").map((h) => parseInt(h, 16));
  b[0] = b[0]! ^ 0x02;
  const groups = [(b[0] << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return canonicalIpv6("fe80::" + groups.map((g) => g.toString(16)).join(":"));
}

/** The eight groups of an IPv6 address (no dotted IPv4 part: the schema refuses it). */
function ipv6Groups(addr: string): number[] {
  const [head, tail] = addr.includes("::") ? addr.split("::") : [addr, undefined];
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const zeros = tail === undefined ? [] : Array.from({ length: 8 - h.length - t.length }, () => "0");
  return [...h, ...zeros, ...t].map((g) => parseInt(g, 16));
}

/**
 * RFC 5952's form, as nft prints an address back (inet_ntop): lower case, no
 * leading zeros, the longest run of two or more zero groups (the first of equals) as `::`.
 */
export function canonicalIpv6(addr: string): string {
  const g = ipv6Groups(addr);
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best.len < 2) return hex.join(":");
  return `${hex.slice(0, best.at).join(":")}::${hex.slice(best.at + best.len).join(":")}`;
}

/** A 128-bit IPv6 address as one hex integer: how nft compares a raw payload field (the NA's target). */
export function ipv6Hex(addr: string): string {
  return "0x" + ipv6Groups(addr).map((g) => g.toString(16).padStart(4, "0")).join("");
}

/** nft's own way of writing a set: one element bare, several in braces. */
function set(items: string[]): string {
  return items.length === 1 ? items[0]! : `{ ${items.join(", ")} }`;
}

/**
 * The body of the tap's chain, one rule a line, written as `nft list chain`
 * prints it back (so the read-back compares line by line, sets in any order).
 * Drops count into the tap's named counter.
 */
export function chainRules(spec: NicFilterSpec): string[] {
  const drop = `counter name "${spec.tap}" drop`;
  if (spec.filtering === "off") return ["accept"];
  const rules = [`ether saddr != ${spec.mac} ${drop}`];
  // ARP's addresses sit at fixed offsets only for Ethernet/IPv4 ARP: anything else
  // could hide a sender the rules below would misread.
  rules.push(
    `arp htype != 1 ${drop}`,
    `arp ptype != ip ${drop}`,
    `arp hlen != 6 ${drop}`,
    `arp plen != 4 ${drop}`,
    `arp operation != { request, reply } ${drop}`,
    `arp saddr ether != ${spec.mac} ${drop}`,
  );
  if (spec.filtering === "mac") return [...rules, "accept"];

  const { v4, v6 } = splitAddresses(spec.addresses);
  const v6Own = [...v6, linkLocalFromMac(spec.mac)];
  // An address probe (RFC 5227) and a DHCP client's asks carry 0.0.0.0: they claim nothing.
  rules.push("arp operation request arp saddr ip 0.0.0.0 accept");
  rules.push(v4.length > 0 ? `arp saddr ip != ${set(v4)} ${drop}` : `ether type arp ${drop}`);
  rules.push("ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept");
  // A DHCP server's answers, whatever address they come from; and anything sent to a
  // DHCP client's port, which a client takes from any source port.
  rules.push(`udp sport 67 ${drop}`);
  rules.push(`udp dport { 68, 546 } ${drop}`);
  rules.push(v4.length > 0 ? `ip saddr != ${set(v4)} ${drop}` : `ether type ip ${drop}`);
  rules.push(`udp sport 547 ${drop}`);
  rules.push(`icmpv6 type { nd-router-advert, nd-redirect } ${drop}`);
  // Duplicate address detection: a solicitation (and the MLD report joining its
  // group) from the unspecified address, before the guest owns the address.
  rules.push("ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept");
  rules.push(`ip6 saddr != ${set(v6Own)} ${drop}`);
  // The target of an advertisement is the address it claims (at byte 8 of the ICMPv6 message).
  rules.push(`icmpv6 type nd-neighbor-advert @th,64,128 != ${set(v6Own.map(ipv6Hex))} ${drop}`);
  // A link-layer address option (source 1 / target 2) right after the address must name the NIC's MAC.
  rules.push(
    `icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } @th,192,8 { 0x1, 0x2 } @th,208,48 != 0x${spec.mac.replaceAll(":", "")} ${drop}`,
  );
  // VLAN-tagged frames and other protocols would pass every rule above unread.
  rules.push(`ether type != { ip, arp, ip6 } ${drop}`);
  rules.push("accept");
  return rules;
}

const table = `${NFT_FAMILY} ${NFT_TABLE}`;

/** The table, the map and the base chain, made if missing and the base chain's rules rewritten: part of every change. */
function baseScript(): string[] {
  return [
    `add table ${table}`,
    `add map ${table} ${TAP_MAP} { type ifname : verdict; }`,
    `add chain ${table} ${PORTS_CHAIN} { type filter hook prerouting priority ${PORTS_PRIORITY}; policy accept; }`,
    `flush chain ${table} ${PORTS_CHAIN}`,
    ...portsRules().map((r) => `add rule ${table} ${PORTS_CHAIN} ${r}`),
  ];
}

/** The base chain's body, as nft prints it. */
export function portsRules(): string[] {
  return [`iifname vmap @${TAP_MAP}`, `iifname "vmh*" counter drop`];
}

/**
 * One transaction that installs (or replaces) the chains of these taps: nft
 * applies all of it or none. The map entry is added last, so the tap's frames
 * go to a chain that is already complete.
 */
export function installScript(specs: NicFilterSpec[]): string {
  const lines = baseScript();
  for (const s of specs) {
    lines.push(`add counter ${table} ${s.tap}`, `add chain ${table} ${s.tap}`, `flush chain ${table} ${s.tap}`);
    for (const r of chainRules(s)) lines.push(`add rule ${table} ${s.tap} ${r}`);
    lines.push(`add element ${table} ${TAP_MAP} { "${s.tap}" : goto ${s.tap} }`);
  }
  return lines.join("\n") + "\n";
}

/**
 * One transaction that removes what exists of these taps' rules (nft 1.0.6 has no
 * `destroy`: deleting what is absent fails the whole transaction, so the caller
 * says what is there). The map entry goes first, then the chain that it named.
 */
export function removeScript(present: { tap: string; mapped: boolean; chain: boolean; counter: boolean }[]): string {
  const lines: string[] = [];
  for (const p of present) if (p.mapped) lines.push(`delete element ${table} ${TAP_MAP} { "${p.tap}" }`);
  for (const p of present) if (p.chain) lines.push(`delete chain ${table} ${p.tap}`);
  for (const p of present) if (p.counter) lines.push(`delete counter ${table} ${p.tap}`);
  return lines.length ? lines.join("\n") + "\n" : "";
}

/**
 * A printed rule made comparable: whitespace collapsed, the elements of each
 * `{ ... }` sorted (nft prints a set in its own order), and a one-element set unwrapped.
 */
export function normalizeRule(rule: string): string {
  // nft may print a raw value without its leading zeros.
  const collapsed = rule.trim().replace(/\s+/g, " ").replace(/\b0x0*([0-9a-f])/g, "0x$1");
  return collapsed.replace(/\{ ([^{}]*) \}/g, (_m, body: string) => {
    // A map's `key : verdict` pairs and plain elements alike.
    const items = body.split(", ").map((s) => s.trim()).sort();
    return items.length === 1 ? items[0]! : `{ ${items.join(", ")} }`;
  });
}

/** The rules of one chain in `nft list chain` output (hook line and braces left out). */
export function parseChainBody(listing: string): string[] {
  const lines = listing.split("\n").map((l) => l.trim());
  const start = lines.findIndex((l) => /^chain \S+ \{$/.test(l));
  if (start < 0) return [];
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l === "}") break;
    if (l === "" || l.startsWith("type ")) continue;
    out.push(normalizeRule(l.replace(/ counter packets \d+ bytes \d+/, " counter")));
  }
  return out;
}
