// A bridged NIC's addresses and filtering changed while the VM runs: the tap's
// chain is replaced in one nft transaction (the guest is never unfiltered, nor
// filtered half by the old list and half by the new), read back, and only then
// is the definition recorded. A stopped VM's definition is simply recorded.
import { ValidationFailed, VmStateConflict } from "../../errors.js";
import type { NicDefinition } from "../../definition/vm-definition.js";
import { filterSpec } from "../../net/nic-filter-rules.js";
import { installNicFilters } from "../../net/nic-filters.js";
import { showLink } from "../../net/ip-link.js";
import { tapName } from "../../net/vm-taps.js";
import type { HostContext } from "../host-context.js";
import type { Vm } from "../vm.js";

export type NicFilterChange = Pick<NicDefinition, "addresses" | "filtering">;

export async function setNicFilter(vm: Vm, host: HostContext, index: number, change: NicFilterChange): Promise<void> {
  const old = vm.definition.nics[index]!;
  if (old.network.type !== "bridge") {
    throw new ValidationFailed("a user-mode NIC has no filter", [{ field: "nic", message: "must be a bridged NIC" }]);
  }
  const next: NicDefinition = { ...old };
  if (change.addresses !== undefined) next.addresses = change.addresses;
  if (change.filtering !== undefined) next.filtering = change.filtering;
  const state = vm.settledState();
  const live = state === "running" || state === "paused";
  if (!live && state !== "stopped" && state !== "crashed") throw new VmStateConflict(vm.name, state, "change a NIC's filter");
  const tap = tapName(vm.definition.uuid, index);
  const apply = live && (await showLink(tap)) !== undefined;
  if (apply) await installNicFilters([filterSpec(tap, next)], vm.log);
  try {
    await vm.changeDefinition(host.store, (d) => ({ ...d, nics: d.nics.map((n, i) => (i === index ? next : n)) }));
  } catch (err) {
    // The definition stays as it was: so do the rules.
    if (apply) await installNicFilters([filterSpec(tap, old)], vm.log).catch((e) => vm.log.error({ err: e, tap }, "cannot restore the NIC's previous rules"));
    throw err;
  }
  vm.log.info({ nic: index, tap, addresses: next.addresses, filtering: next.filtering ?? "strict", live: apply }, "NIC filter changed");
}
