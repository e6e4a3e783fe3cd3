// Installs, verifies and removes the anti-spoofing rules of the VMs' taps
// (nic-filter-rules.ts says what they are). A tap is brought up only after its
// rules were installed and read back equal to what was meant; any difference is a
// NetworkFailed, and the tap stays down. Every change is one nft transaction.
import type { Logger } from "pino";
import { NetworkFailed } from "../errors.js";
import { nft, nftApply, nftFault, NFT_MISSING } from "./nft.js";
import {
  chainRules,
  installScript,
  normalizeRule,
  NFT_FAMILY,
  NFT_TABLE,
  PORTS_CHAIN,
  portsRules,
  removeScript,
  TAP_MAP,
  type NicFilterSpec,
} from "./nic-filter-rules.js";

/** The daemon's table as read back: each chain's rules (normalized), the map's entries, the counters. */
export interface FilterTable {
  chains: Map<string, string[]>;
  /** Tap → the chain its frames go to. */
  map: Map<string, string>;
  /** Counter name (= tap) → packets dropped. */
  counters: Map<string, number>;
}

interface NftJson {
  nftables: {
    map?: { name: string; elem?: [string, { goto?: { target: string }; jump?: { target: string } }][] };
    counter?: { name: string; packets: number };
  }[];
}

/** Reads the table, or undefined if there is none. */
export async function readFilterTable(): Promise<FilterTable | undefined> {
  let text: string;
  let json: string;
  try {
    [text, json] = await Promise.all([nft(["list", "table", NFT_FAMILY, NFT_TABLE]), nft(["-j", "list", "table", NFT_FAMILY, NFT_TABLE])]);
  } catch (err) {
    // No table yet; or no nft at all, and so no rules (installing them will fail, closed).
    if (/No such file or directory|does not exist/.test((err as Error).message) || (err as Error).message.includes(NFT_MISSING)) return undefined;
    throw err;
  }
  const chains = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const head = /^chain (\S+) \{$/.exec(line);
    if (head) {
      current = [];
      chains.set(head[1]!, current);
    } else if (line === "}") current = undefined;
    else if (current && line !== "" && !line.startsWith("type ")) current.push(normalizeRule(line.replace(/ counter packets \d+ bytes \d+/, " counter")));
  }
  const map = new Map<string, string>();
  const counters = new Map<string, number>();
  for (const o of (JSON.parse(json) as NftJson).nftables) {
    if (o.map?.name === TAP_MAP) for (const [tap, v] of o.map.elem ?? []) map.set(tap, v.goto?.target ?? v.jump?.target ?? "");
    if (o.counter) counters.set(o.counter.name, o.counter.packets);
  }
  return { chains, map, counters };
}

/** What differs between the table and the rules meant for these taps; empty when they match. */
export function compareFilters(table: FilterTable | undefined, specs: NicFilterSpec[]): string[] {
  if (!table) return [`table ${NFT_FAMILY} ${NFT_TABLE} is missing`];
  const problems: string[] = [];
  const same = (a: string[] | undefined, b: string[]) => a !== undefined && a.length === b.length && a.every((r, i) => r === b[i]);
  if (!same(table.chains.get(PORTS_CHAIN), portsRules().map(normalizeRule))) problems.push(`chain ${PORTS_CHAIN} differs`);
  for (const s of specs) {
    if (!same(table.chains.get(s.tap), chainRules(s).map(normalizeRule))) problems.push(`chain ${s.tap} differs`);
    if (table.map.get(s.tap) !== s.tap) problems.push(`${TAP_MAP} does not send ${s.tap} to its chain`);
  }
  return problems;
}

/**
 * Installs the taps' rules in one transaction, reads the table back and compares.
 * Throws NetworkFailed when nft refuses or the table differs.
 */
export async function installNicFilters(specs: NicFilterSpec[], log: Logger): Promise<void> {
  if (specs.length === 0) return;
  for (const s of specs) if (s.filtering === "off") log.warn({ tap: s.tap }, "filtering is off for this NIC: the guest may use any MAC and address");
  await nftApply(installScript(specs));
  await verifyNicFilters(specs);
  log.info({ taps: specs.map((s) => ({ tap: s.tap, filtering: s.filtering })) }, "NIC filters installed and verified");
}

/** Reads the table back and throws NetworkFailed naming what differs. */
export async function verifyNicFilters(specs: NicFilterSpec[]): Promise<void> {
  const table = await readFilterTable();
  if (table && nftFault() === "compare") for (const s of specs) table.chains.get(s.tap)?.pop();
  const problems = compareFilters(table, specs);
  if (problems.length > 0) {
    throw new NetworkFailed(`the rules read back from nft differ from those installed: ${problems.join("; ")}`, { taps: specs.map((s) => s.tap), problems });
  }
}

/** Re-installs the rules of taps whose read-back differs (adoption). Returns the taps that were repaired. */
export async function repairNicFilters(specs: NicFilterSpec[], log: Logger): Promise<string[]> {
  if (specs.length === 0) return [];
  const table = await readFilterTable();
  const broken = specs.filter((s) => compareFilters(table, [s]).length > 0);
  const portsBroken = compareFilters(table, []).length > 0;
  if (broken.length === 0 && !portsBroken) return [];
  log.warn({ taps: broken.map((s) => s.tap) }, "NIC filters differ from the definition; repairing");
  await installNicFilters(broken.length ? broken : specs, log);
  return broken.map((s) => s.tap);
}

/** Removes what is left of these taps' rules, in one transaction. */
export async function removeNicFilters(taps: string[]): Promise<void> {
  if (taps.length === 0) return;
  const table = await readFilterTable();
  if (!table) return;
  const present = taps
    .map((tap) => ({ tap, mapped: table.map.has(tap), chain: table.chains.has(tap), counter: table.counters.has(tap) }))
    .filter((p) => p.mapped || p.chain || p.counter);
  const script = removeScript(present);
  if (script) await nft(["-f", "-"], script);
}

/** Removes the rules of every tap named in the table that no longer exists on the host. */
export async function pruneNicFilters(exists: (tap: string) => Promise<boolean>, log: Logger): Promise<string[]> {
  const table = await readFilterTable();
  if (!table) return [];
  const named = new Set([...table.map.keys(), ...[...table.chains.keys()].filter((c) => c !== PORTS_CHAIN), ...table.counters.keys()]);
  const gone: string[] = [];
  for (const tap of named) if (!(await exists(tap))) gone.push(tap);
  if (gone.length === 0) return [];
  await removeNicFilters(gone);
  log.info({ taps: gone }, "rules of taps that no longer exist removed");
  return gone;
}

/** Packets dropped per tap, from the taps' named counters; empty when there is no table. */
export async function droppedPackets(): Promise<Map<string, number>> {
  const table = await readFilterTable().catch(() => undefined);
  return table?.counters ?? new Map();
}
