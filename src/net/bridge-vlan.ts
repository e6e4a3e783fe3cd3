// VLANs per NIC on a VLAN-aware Linux bridge (`vlan_filtering 1`, set up by the
// operator): the tap's port gets its access VLAN as PVID/untagged, or its list of
// tagged VLANs, and loses the bridge's default VLAN 1. A kernel built without
// bridge VLAN filtering has no `vlan_filtering` attribute on its bridges; such a
// host refuses a NIC that asks for a VLAN rather than put it on every VLAN at once.
import { readFile } from "node:fs/promises";
import type { NicDefinition, VmDefinition } from "../definition/vm-definition.js";
import { NetworkFailed, VlanUnsupported } from "../errors.js";
import { execChild } from "../host/child-process.js";

const BRIDGE_TIMEOUT_MS = 10_000;

/** What the bridge's port of a NIC should carry. */
export type PortVlans = Pick<NicDefinition, "vlan" | "trunk">;

/** `10,11,12,20` → `10-12`, `20`: `bridge vlan` takes a range as one vid argument. */
export function vlanRanges(ids: number[]): string[] {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    out.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out;
}

/**
 * The `bridge` commands (argv without the program) that give the tap's port its
 * VLANs: the default VLAN 1 removed first, then the tagged list, then the access
 * VLAN as PVID and untagged (which may be 1 again). Empty when the NIC has no VLAN.
 */
export function vlanCommands(tap: string, v: PortVlans): string[][] {
  if (v.vlan === undefined && v.trunk === undefined) return [];
  const cmds: string[][] = [["vlan", "del", "dev", tap, "vid", "1"]];
  for (const range of vlanRanges(v.trunk ?? [])) cmds.push(["vlan", "add", "dev", tap, "vid", range]);
  if (v.vlan !== undefined) cmds.push(["vlan", "add", "dev", tap, "vid", String(v.vlan), "pvid", "untagged"]);
  return cmds;
}

/** Runs the commands in order; the first that fails is a NetworkFailed. */
export async function applyPortVlans(tap: string, v: PortVlans): Promise<void> {
  for (const args of vlanCommands(tap, v)) {
    try {
      await execChild("bridge", args, { timeout: BRIDGE_TIMEOUT_MS });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new NetworkFailed(`bridge ${args.join(" ")} failed: ${(e.stderr || e.message).trim()}`, { command: ["bridge", ...args] });
    }
  }
}

/** Whether the kernel has bridge VLAN filtering at all: learnt from the first bridge looked at, then kept. */
let kernelHasVlanFiltering: boolean | undefined;

/** "unsupported": the kernel lacks it; "off": the bridge has it off; "on". */
export async function bridgeVlanFiltering(bridge: string, sysfs = "/sys/class/net"): Promise<"unsupported" | "off" | "on"> {
  if (kernelHasVlanFiltering === false) return "unsupported";
  let value: string;
  try {
    value = (await readFile(`${sysfs}/${bridge}/bridge/vlan_filtering`, "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    // Only a bridge that exists tells about the kernel (checkBridges has seen it does).
    const isBridge = await readFile(`${sysfs}/${bridge}/bridge/stp_state`, "utf8").then(() => true, () => false);
    if (isBridge) kernelHasVlanFiltering = false;
    return "unsupported";
  }
  kernelHasVlanFiltering = true;
  return value === "1" ? "on" : "off";
}

/** Refuses a NIC with `vlan` or `trunk` on a bridge that cannot keep VLANs apart; the error names the field. */
export async function checkVlans(def: Pick<VmDefinition, "nics">): Promise<void> {
  for (const [i, nic] of def.nics.entries()) {
    if (nic.network.type !== "bridge" || (nic.vlan === undefined && nic.trunk === undefined)) continue;
    const field = `nics.${i}.${nic.vlan !== undefined ? "vlan" : "trunk"}`;
    const state = await bridgeVlanFiltering(nic.network.bridge);
    if (state === "unsupported") {
      throw new VlanUnsupported(`${field}: this host's kernel has no bridge VLAN filtering, so VLANs cannot be kept apart here`, { field });
    }
    if (state === "off") {
      throw new VlanUnsupported(`${field}: bridge "${nic.network.bridge}" has vlan_filtering off; the operator turns it on (ip link set ${nic.network.bridge} type bridge vlan_filtering 1)`, { field });
    }
  }
}
