// Which tap devices a VM needs, as a pure function of its definition: the argv
// builder names them to qemu, the start creates them, and a restarted daemon
// finds them again by the same names without having to remember anything.
import { createHash } from "node:crypto";
import type { VmDefinition } from "../definition/vm-definition.js";

/**
 * Most queues a multi-queue NIC gets. Each is a pair of virtqueues, an open file
 * of the tap (and a vhost thread under KVM); past a handful, one NIC gains little.
 */
export const MAX_TAP_QUEUES = 8;

/** Every tap the daemon makes carries an alias starting with this; it removes no other. */
export const TAP_ALIAS_PREFIX = "vmhostd:";

export interface VmTap {
  /** Index of the NIC in the definition. */
  nic: number;
  /** `vmh` + 8 hex digits: 11 characters, inside Linux's 15. */
  name: string;
  bridge: string;
  /** 1, or the vCPU count (capped) for a multi-queue tap. */
  queues: number;
  /** `vmhostd:<vm>:<nic>`: `ip link` shows whose tap it is. */
  alias: string;
}

/**
 * Stable per VM and NIC, and derived from the uuid rather than the name: VM names
 * are up to 63 characters and an interface name only 15. 32 bits of a hash make a
 * clash between two VMs of one host vanishingly unlikely, and creating a tap over
 * a name taken by something else fails rather than takes it.
 */
export function tapName(uuid: string, nic: number): string {
  return "vmh" + createHash("sha256").update(`${uuid}:${nic}`).digest("hex").slice(0, 8);
}

/** One queue per vCPU lets each vCPU send and receive on its own; a single vCPU gains nothing. */
export function tapQueues(vcpus: number): number {
  return Math.max(1, Math.min(vcpus, MAX_TAP_QUEUES));
}

/** The taps of the VM's bridge NICs; user-mode NICs need none. */
export function vmTaps(def: Pick<VmDefinition, "name" | "uuid" | "vcpus" | "nics">): VmTap[] {
  const taps: VmTap[] = [];
  def.nics.forEach((nic, i) => {
    if (nic.network.type !== "bridge") return;
    taps.push({
      nic: i,
      name: tapName(def.uuid, i),
      bridge: nic.network.bridge,
      queues: tapQueues(def.vcpus),
      alias: `${TAP_ALIAS_PREFIX}${def.name}:${i}`,
    });
  });
  return taps;
}
