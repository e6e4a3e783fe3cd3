// Ethernet frames a test guest sends with vmh-rawsend (test/fixtures/guest/rawsend.c)
// to play a neighbour that forges: ARP replies, neighbour and router advertisements.
// Each returns the frame as hex, as vmh-rawsend takes it.
import { canonicalIpv6 } from "../../src/net/nic-filter-rules.js";

const macBytes = (mac: string): number[] => mac.split(":").map((h) => parseInt(h, 16));
const ipv4Bytes = (ip: string): number[] => ip.split(".").map(Number);

function ipv6Bytes(addr: string): number[] {
  const canon = canonicalIpv6(addr);
  const [head, tail] = canon.includes("::") ? canon.split("::") : [canon, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array.from({ length: 8 - h.length - t.length }, () => "0"), ...t].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const u32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const hex = (bytes: number[]): string => Buffer.from(bytes).toString("hex");

function ethernet(dst: string, src: string, type: number, payload: number[]): number[] {
  return [...macBytes(dst), ...macBytes(src), ...u16(type), ...payload];
}

/** An ARP reply: "senderIp is at senderMac", sent to one host. */
export function arpReply(o: { from: string; senderMac: string; senderIp: string; toMac: string; toIp: string }): string {
  const arp = [...u16(1), ...u16(0x0800), 6, 4, ...u16(2), ...macBytes(o.senderMac), ...ipv4Bytes(o.senderIp), ...macBytes(o.toMac), ...ipv4Bytes(o.toIp)];
  return hex(ethernet(o.toMac, o.from, 0x0806, arp));
}

/** ICMPv6 in IPv6 with hop limit 255 (as ND requires) and its checksum over the pseudo-header. */
function icmpv6(src: string, dst: string, message: number[]): number[] {
  const s = ipv6Bytes(src);
  const d = ipv6Bytes(dst);
  const pseudo = [...s, ...d, ...u32(message.length), 0, 0, 0, 58, ...message];
  let sum = 0;
  for (let i = 0; i < pseudo.length; i += 2) sum += (pseudo[i]! << 8) | (pseudo[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  const cksum = ~sum & 0xffff;
  const msg = [...message];
  msg[2] = cksum >> 8;
  msg[3] = cksum & 0xff;
  return [0x60, 0, 0, 0, ...u16(msg.length), 58, 255, ...s, ...d, ...msg];
}

/** An unsolicited neighbour advertisement (override set) to all nodes: "target is at mac". */
export function neighbourAdvert(o: { from: string; src: string; target: string; mac: string }): string {
  const na = [136, 0, 0, 0, ...u32(0x20000000), ...ipv6Bytes(o.target), 2, 1, ...macBytes(o.mac)];
  return hex(ethernet("33:33:00:00:00:01", o.from, 0x86dd, icmpv6(o.src, "ff02::1", na)));
}

/** A router advertisement to all nodes offering `prefix`/64 for SLAAC and itself as default router. */
export function routerAdvert(o: { from: string; src: string; prefix: string }): string {
  const prefixInfo = [3, 4, 64, 0xc0, ...u32(86400), ...u32(14400), ...u32(0), ...ipv6Bytes(o.prefix)];
  const ra = [134, 0, 0, 0, 64, 0, ...u16(1800), ...u32(0), ...u32(0), ...prefixInfo, 1, 1, ...macBytes(o.from)];
  return hex(ethernet("33:33:00:00:00:01", o.from, 0x86dd, icmpv6(o.src, "ff02::1", ra)));
}
