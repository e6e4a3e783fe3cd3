// A migration stream carries device state, not devices: the destination's qemu,
// built from the definition, must have exactly the devices (same drivers, ids and
// buses) the running source qemu has. That breaks when devices were hot-plugged
// since the start, or when the source qemu was started by a vmhostd that laid out
// devices differently. Checked before anything is asked of the destination.
import { buildMachinePlan } from "../qemu/machine-plan.js";
import { planDeviceLayout } from "../qemu/plan-layout.js";
import { runningDeviceLayout } from "../qemu/running-argv.js";
import type { HostContext } from "../vm/host-context.js";
import { resolveVmFiles } from "../vm/vm-files.js";
import type { Vm } from "../vm/vm.js";

/** The `-device` entries of a running qemu's argv as `driver id bus` lines, in order. */
export const deviceLayout = runningDeviceLayout;

/** Where the running qemu's devices and a fresh start from the definition differ; empty when they match. */
export async function deviceLayoutDifference(vm: Vm, host: HostContext): Promise<string[]> {
  const record = vm.session?.record;
  if (!record) return [];
  const files = await resolveVmFiles(vm.definition, host.pools, vm.paths);
  const fresh = buildMachinePlan({ def: vm.definition, paths: vm.paths, accel: record.accel, files, ioUring: host.ioUring });
  const running = runningDeviceLayout(record.argv);
  const wanted = planDeviceLayout(fresh);
  return [
    ...running.filter((d) => !wanted.includes(d)).map((d) => `running only: ${d}`),
    ...wanted.filter((d) => !running.includes(d)).map((d) => `definition only: ${d}`),
  ];
}
