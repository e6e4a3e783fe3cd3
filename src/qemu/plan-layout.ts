// The device layout a live migration compares: a migration stream carries device
// state, not devices, so the destination's qemu must have the same devices (driver,
// id and bus, in order) as the running source. Here from a plan; from a running
// qemu's argv in running-argv.ts, in the same line format.
import type { MachinePlan } from "./plan-types.js";

/** One device as `driver id bus`. */
export function layoutLine(d: { driver?: string; id?: string; bus?: string }): string {
  return `${d.driver ?? ""} ${d.id ?? ""} ${d.bus ?? ""}`;
}

export function planDeviceLayout(plan: MachinePlan): string[] {
  return plan.entries.flatMap((e) => (e.kind === "device" ? [layoutLine(e.device)] : []));
}
