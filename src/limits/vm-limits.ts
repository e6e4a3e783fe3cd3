// A running VM's limits as one whole: placed (its qemu into its cgroup, before
// the guest runs), applied (cgroup, throttle group, taps), read back from the
// kernel and qemu (what the view and the metrics show), and released after qemu
// ends. The definition's `limits` is what is wanted; this is what is so.
import type { Logger } from "pino";
import type { VmDefinition } from "../definition/vm-definition.js";
import { LimitsFailed } from "../errors.js";
import { vmTaps } from "../net/vm-taps.js";
import type { QemuSession } from "../vm/qemu-session.js";
import { diskLimitsFromThrottle, THROTTLE_GROUP_PATH, throttleSetCommand, type ThrottleLimits } from "./disk-throttle.js";
import type { VmLimits } from "./limits-schema.js";
import { applyTapShaping, readTapShaping, removeTapShaping } from "./tap-shaping.js";
import { applyCgroupLimits, findVmCgroup, isVmCgroup, placeInCgroup, readCgroupLimits, removeVmCgroup, vmCgroupLeaf } from "./vm-cgroup.js";

/** What of a VM its limits need. */
export interface LimitedVm {
  name: string;
  definition: VmDefinition;
  paths: { runDir: string };
  session: QemuSession | undefined;
  log: Logger;
}

const leafOf = (vm: Pick<LimitedVm, "name" | "paths">): string => vmCgroupLeaf(vm.name, vm.paths.runDir);

const NO_CGROUP = "this host has no cgroup hierarchy with the cpu, memory and pids controllers: cpu, memory and pids limits cannot be applied";

const hasCgroupLimits = (l: VmLimits | undefined): boolean => l?.cpu !== undefined || l?.memory !== undefined || l?.pids !== undefined;

/**
 * At spawn, before `cont` (or before an incoming migration's stream): qemu
 * into its cgroup, with the definition's cpu, memory and pids limits. The
 * throttle group has its limits from the command line; the taps get theirs here.
 */
export async function placeQemu(vm: Pick<LimitedVm, "name" | "definition" | "paths" | "log">, pid: number): Promise<void> {
  const limited = hasCgroupLimits(vm.definition.limits);
  const ref = await placeInCgroup(leafOf(vm), pid).catch((err: unknown) => {
    // A host whose cgroup tree the daemon may not write (a read-only /sys/fs/cgroup) still runs VMs without such limits.
    if (limited) throw err;
    vm.log.warn({ err }, "cannot give qemu a cgroup of its own; it stays in the daemon's");
    return undefined;
  });
  if (ref) await applyCgroupLimits(ref, vm.definition.limits);
  // A VM whose limits cannot be applied does not start: it would run without them.
  else if (limited) throw new LimitsFailed(NO_CGROUP);
  else vm.log.debug("no usable cgroup hierarchy with cpu, memory and pids: qemu stays in the daemon's cgroup");
  // A tap made for this start carries no qdisc yet: only limits need tc.
  const network = vm.definition.limits?.network;
  if (network) for (const tap of vmTaps(vm.definition)) await applyTapShaping(tap.name, network);
}

/**
 * After a daemon restart: the qemu is found in its cgroup again (or, started
 * by a daemon that made none, put into one now) and every limit is written
 * again, so what is applied is what the definition says.
 */
export async function readoptLimits(vm: LimitedVm): Promise<void> {
  const session = vm.session;
  if (!session) return;
  const ref = await findVmCgroup(session.pid);
  if (ref && !isVmCgroup(ref, leafOf(vm))) {
    vm.log.warn({ cgroup: ref.dirs.cpu }, "adopted qemu is not in its own cgroup; moving it there");
    await placeInCgroup(leafOf(vm), session.pid);
  }
  await applyLimits(vm, vm.definition.limits);
}

/** Makes the running VM hold `limits` at once: cgroup, throttle group, each tap. */
export async function applyLimits(vm: LimitedVm, limits: VmLimits | undefined): Promise<void> {
  const session = vm.session;
  if (!session) return;
  const ref = await findVmCgroup(session.pid);
  if (ref && isVmCgroup(ref, leafOf(vm))) await applyCgroupLimits(ref, limits);
  else if (hasCgroupLimits(limits)) {
    throw new LimitsFailed(ref ? `qemu (pid ${session.pid}) is not in the VM's own cgroup` : NO_CGROUP);
  }
  const { command, args } = throttleSetCommand(limits?.disk);
  await session.execute(command, args).catch((err: Error) => {
    // A qemu started by a vmhostd before throttle groups has none: only disk limits need it.
    if (limits?.disk === undefined) return;
    throw new LimitsFailed(`qemu refused the disk limits (a qemu started before throttle groups needs a restart): ${err.message}`);
  });
  for (const tap of vmTaps(vm.definition)) await applyTapShaping(tap.name, limits?.network);
}

/** Limits as read back, and whether every source answered (a hung qemu leaves the disk limits out). */
export interface AppliedLimitsRead {
  limits: VmLimits;
  whole: boolean;
}

/**
 * The limits the running VM holds, read from its cgroup, qemu's throttle group and
 * its taps. qemu is given `qmpTimeoutMs` to answer (a hung one is not waited on:
 * the disk limits are then left out and the read is not whole).
 */
export async function readAppliedLimits(vm: LimitedVm, qmpTimeoutMs = 1000): Promise<AppliedLimitsRead | undefined> {
  const session = vm.session;
  if (!session?.connected) return undefined;
  const ref = await findVmCgroup(session.pid);
  const fromCgroup = ref && isVmCgroup(ref, leafOf(vm)) ? await readCgroupLimits(ref) : {};
  // Raced rather than given a short command timeout: a slow answer is not a hung qemu.
  let timer: NodeJS.Timeout | undefined;
  const timedOut = Symbol("timed out");
  const throttle = session.unresponsive
    ? timedOut
    : await Promise.race([
        session.execute("qom-get", { path: THROTTLE_GROUP_PATH, property: "limits" }).then((t) => t as ThrottleLimits, () => undefined),
        new Promise<typeof timedOut>((resolve) => (timer = setTimeout(() => resolve(timedOut), qmpTimeoutMs))),
      ]).finally(() => clearTimeout(timer));
  const disk = throttle && throttle !== timedOut ? diskLimitsFromThrottle(throttle) : undefined;
  // Each bridged NIC's tap carries the same limits; the first one's are shown.
  const tap = vmTaps(vm.definition)[0];
  const network = tap ? await readTapShaping(tap.name).catch(() => ({})) : {};
  const limits = {
    ...fromCgroup,
    ...(disk ? { disk } : {}),
    ...(Object.keys(network).length > 0 ? { network } : {}),
  };
  return { limits, whole: throttle !== timedOut };
}

/** After qemu ended: its cgroup (empty now) and its taps' ifb devices. */
export async function releaseLimits(vm: Pick<LimitedVm, "name" | "definition" | "paths">): Promise<void> {
  await removeVmCgroup(leafOf(vm));
  for (const tap of vmTaps(vm.definition)) await removeTapShaping(tap.name);
}
