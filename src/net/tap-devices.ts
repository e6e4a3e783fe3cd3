// The tap devices of a VM's bridge NICs on the host: made by the daemon before
// qemu is spawned (qemu then only opens them: it runs no ifup script and needs no
// privilege of its own), removed once qemu has gone. A tap is removed only if it
// carries the daemon's alias and no process has it open, so a tap that a live
// qemu still uses, or an interface of someone else's, is never taken away.
// A tap is brought up only once its VLANs are set and its filter rules are
// installed and read back equal (nic-filters.ts): until then it forwards nothing.
import type { Logger } from "pino";
import { BridgeNotFound, NetworkFailed } from "../errors.js";
import type { VmDefinition } from "../definition/vm-definition.js";
import type { QemuIdentity } from "../qemu/qemu-user.js";
import { addTap, attachToBridge, deleteLink, setLinkUp, showLink, type LinkInfo } from "./ip-link.js";
import { applyPortVlans, bridgeVlanFiltering, checkVlans } from "./bridge-vlan.js";
import { filterSpec } from "./nic-filter-rules.js";
import { installNicFilters, pruneNicFilters, removeNicFilters, repairNicFilters } from "./nic-filters.js";
import { TAP_ALIAS_PREFIX, vmTaps, type VmTap } from "./vm-taps.js";

type NetDefinition = Pick<VmDefinition, "name" | "uuid" | "vcpus" | "nics">;

/** Every bridge the VM's NICs name must exist and be a Linux bridge; the error names the NIC's field. */
export async function checkBridges(def: Pick<VmDefinition, "nics">): Promise<void> {
  await Promise.all(
    def.nics.map(async (nic, i) => {
      if (nic.network.type !== "bridge") return;
      const { bridge } = nic.network;
      const field = `nics.${i}.network.bridge`;
      const link = await showLink(bridge);
      if (!link) throw new BridgeNotFound(`${field}: there is no bridge named "${bridge}" on this host`, { field, bridge });
      if (link.kind !== "bridge") {
        const what = link.kind ? `a ${link.kind} device` : "a physical interface";
        throw new BridgeNotFound(`${field}: "${bridge}" is not a Linux bridge but ${what}`, { field, bridge });
      }
    }),
  );
  await checkVlans(def);
}

/** The filter rules each tap of the VM is meant to have. */
export function vmFilterSpecs(def: NetDefinition, taps = vmTaps(def)) {
  return taps.map((t) => filterSpec(t.name, def.nics[t.nic]!));
}

/**
 * Checks the bridges, then creates and attaches every tap of the VM. On failure
 * the taps made so far are removed again before the error goes on.
 */
export async function createVmTaps(def: NetDefinition, log: Logger, owner?: QemuIdentity): Promise<VmTap[]> {
  const taps = vmTaps(def);
  if (taps.length === 0) return taps;
  await checkBridges(def);
  const made: VmTap[] = [];
  const results = await Promise.allSettled(
    taps.map(async (tap) => {
      await addTapReplacingStale(tap, log, owner);
      made.push(tap);
      await attachToBridge(tap.name, tap.bridge, tap.alias);
    }),
  );
  let failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (!failed) {
    try {
      for (const tap of taps) await applyPortVlans(tap.name, def.nics[tap.nic]!);
      await installNicFilters(vmFilterSpecs(def, taps), log);
      await Promise.all(taps.map((t) => setLinkUp(t.name)));
    } catch (err) {
      failed = { status: "rejected", reason: err };
    }
  }
  if (failed) {
    // Made a moment ago and not yet given to qemu: deleted outright, alias or not.
    await Promise.all(made.map((t) => deleteLink(t.name).catch((err) => log.error({ err, tap: t.name }, "cannot remove tap"))));
    await removeNicFilters(made.map((t) => t.name)).catch((err) => log.error({ err }, "cannot remove the filter rules of the taps"));
    throw failed.reason;
  }
  log.info({ taps: taps.map((t) => ({ name: t.name, bridge: t.bridge, queues: t.queues })) }, "taps created");
  return taps;
}

/**
 * Creating first and looking only when that fails keeps the usual start to one
 * command per tap. A tap of this very name left by a run whose clean-up never
 * happened (the host lost power, `ip` failed) is ours to replace.
 */
async function addTapReplacingStale(tap: VmTap, log: Logger, owner?: QemuIdentity): Promise<void> {
  const multiQueue = tap.queues > 1;
  try {
    await addTap(tap.name, multiQueue, owner);
    return;
  } catch (err) {
    const link = await showLink(tap.name);
    if (!link) throw err;
    if (!isDaemonTap(link)) {
      throw new NetworkFailed(`interface name ${tap.name} is taken by an interface vmhostd did not make`, { tap: tap.name });
    }
    if (link.attached) {
      throw new NetworkFailed(`tap ${tap.name} is open in another process (a qemu vmhostd lost track of?)`, { tap: tap.name });
    }
    log.warn({ tap: tap.name, alias: link.alias }, "replacing a stale tap");
    await deleteLink(tap.name);
  }
  await addTap(tap.name, multiQueue, owner);
}

/** Removes the VM's taps that are left and unused. Never throws: a failure is logged, the tap stays. */
export async function removeVmTaps(def: NetDefinition, log: Logger): Promise<void> {
  await removeTaps(vmTaps(def), log);
}

async function removeTaps(taps: VmTap[], log: Logger): Promise<void> {
  await Promise.all(
    taps.map(async (tap) => {
      try {
        const link = await showLink(tap.name);
        if (!link) {
          await removeNicFilters([tap.name]);
          return;
        }
        if (!isDaemonTap(link)) {
          log.warn({ tap: tap.name, kind: link.kind, alias: link.alias }, "an interface of the tap's name is not vmhostd's; left alone");
          return;
        }
        if (link.attached) {
          log.warn({ tap: tap.name }, "tap still open in some process; left in place");
          return;
        }
        await deleteLink(tap.name);
        // After the tap: a tap without its rules would be dropped anyway, never let through.
        await removeNicFilters([tap.name]);
        log.info({ tap: tap.name }, "tap removed");
      } catch (err) {
        log.error({ err, tap: tap.name }, "cannot remove tap");
      }
    }),
  );
}

/**
 * A tap with the daemon's alias, or with none: the alias is set just after the tap
 * is made, so a daemon killed between the two leaves one without. Its name, derived
 * from this VM's uuid, already says whose it is.
 */
function isDaemonTap(link: LinkInfo): boolean {
  return link.kind === "tun" && link.tunType === "tap" && (link.alias === undefined || link.alias.startsWith(TAP_ALIAS_PREFIX));
}

/**
 * Adoption of a running VM: the rules of its taps (those that exist) are read back
 * and re-installed where they differ from the definition, and its ports' VLANs set
 * again. A failure is logged: the guest already runs, and cutting it off because
 * the daemon restarted would do more harm than the rules it lacks.
 */
export async function recheckVmTaps(def: NetDefinition, log: Logger): Promise<void> {
  const present: VmTap[] = [];
  for (const tap of vmTaps(def)) if (await showLink(tap.name)) present.push(tap);
  try {
    const repaired = await repairNicFilters(vmFilterSpecs(def, present), log);
    if (repaired.length > 0) log.warn({ taps: repaired }, "NIC filters repaired at adoption");
  } catch (err) {
    log.error({ err }, "cannot repair the NIC filters at adoption");
  }
  for (const tap of present) {
    const nic = def.nics[tap.nic]!;
    if (nic.vlan === undefined && nic.trunk === undefined) continue;
    if ((await bridgeVlanFiltering(tap.bridge)) !== "on") {
      log.error({ tap: tap.name, bridge: tap.bridge }, "the tap's bridge no longer filters VLANs");
      continue;
    }
    // `bridge vlan del vid 1` fails once it is gone: the adds that follow are what counts.
    await applyPortVlans(tap.name, { ...nic }).catch((err) => log.warn({ err, tap: tap.name }, "re-setting the port's VLANs"));
  }
}

/** Removes the rules of taps that no longer exist (after every VM was adopted). Never throws. */
export async function pruneTapFilters(log: Logger): Promise<void> {
  await pruneNicFilters(async (tap) => (await showLink(tap)) !== undefined, log).catch((err) => log.error({ err }, "cannot prune NIC filters"));
}
