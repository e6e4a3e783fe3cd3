// The `set-limits` action: the patch is merged into the VM's limits under its
// lock and checked whole; the running VM gets them at once, then the definition
// records them. A limit the host refuses leaves the VM with the limits it had
// (applied again) and the definition as it was.
import { ValidationFailed } from "../../errors.js";
import { limitsIssues, mergeLimits, vmLimitsSchema, type LimitsPatch, type VmLimits } from "../../limits/limits-schema.js";
import { applyLimits } from "../../limits/vm-limits.js";
import type { VmDefinition } from "../../definition/vm-definition.js";
import type { HostContext } from "../host-context.js";
import type { Vm } from "../vm.js";

/** The merged limits, or a 400 naming the field of the patch (`cpu.maxPercent`). */
export function mergedLimits(current: VmLimits | undefined, patch: LimitsPatch, memoryMiB: number): VmLimits {
  const parsed = vmLimitsSchema.safeParse(mergeLimits(current, patch));
  const issues = parsed.success
    ? limitsIssues(parsed.data, memoryMiB).map((i) => ({ field: i.path.slice(1).join("."), message: i.message }))
    : parsed.error.issues.map((i) => ({ field: i.path.join("."), message: i.message }));
  if (!parsed.success || issues.length > 0) {
    throw new ValidationFailed(`limits: ${issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`, issues);
  }
  return parsed.data;
}

export async function setLimits(vm: Vm, host: HostContext, patch: LimitsPatch): Promise<void> {
  const before = vm.definition.limits;
  const limits = mergedLimits(before, patch, vm.definition.memoryMiB);
  const restore = async (): Promise<void> => {
    await applyLimits(vm, before).catch((err: unknown) => vm.log.error({ err }, "cannot apply the previous limits again"));
  };
  try {
    await applyLimits(vm, limits);
  } catch (err) {
    await restore();
    throw err;
  }
  try {
    await vm.changeDefinition(host.store, (d) => {
      const def: VmDefinition = { ...d };
      if (Object.keys(limits).length > 0) def.limits = limits;
      else delete def.limits;
      return def;
    });
  } catch (err) {
    await restore();
    throw err;
  }
  vm.log.info({ limits }, "limits set");
  vm.publish("vm.limits", { limits, live: vm.session !== undefined });
}
