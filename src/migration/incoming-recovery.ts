// The destination after a restart of its daemon: what to make of an incoming
// migration its journal says was under way, and of outcome records left
// `prepared`. A commit that got as far as the owner key (fleet mode), its
// `committed` record or its journal step is finished: the guest runs here, and
// the source, told `committed`, removes its copy. Anything earlier is undone,
// recorded `aborted` first, so the source may resume its own.
import type { JournalEntry } from "../store/operation-journal.js";
import { endEntry } from "../vm/action-journal.js";
import type { HostContext } from "../vm/host-context.js";
import type { Vm } from "../vm/vm.js";
import type { OutcomeStore } from "./outcome-store.js";

export async function recoverIncoming(
  host: HostContext,
  outcomes: OutcomeStore,
  vm: Vm,
  entry: Pick<JournalEntry, "done" | "facts">,
  undo: { removeAll(): Promise<void> },
): Promise<void> {
  const id = entry.facts.migration;
  const rec = id ? await outcomes.read(id) : undefined;
  const committed =
    rec?.outcome !== "aborted" && (entry.done.includes("commit-begun") || rec?.outcome === "committed" || (await keyTakenHere(host, vm)));
  if (!committed) {
    vm.log.warn("an incoming migration was cut short by a daemon restart; removing it");
    await undo.removeAll();
    return;
  }
  if (id) await outcomes.record(id, vm.definition, "committed");
  if (vm.session) await vm.session.execute("cont").catch(() => {});
  else vm.log.error("an incoming migration was committed but its qemu is gone; the guest is stopped here, never at the source");
  await endEntry(vm, "recorded");
  vm.log.info("the commit of an incoming migration is finished after a daemon restart");
}

/** Fleet mode: the owner key already names this host (a commit killed between the handover and its record). */
async function keyTakenHere(host: HostContext, vm: Vm): Promise<boolean> {
  const fleet = host.fleet;
  if (!fleet || !vm.session) return false;
  // etcd unreachable throws: nothing is removed on a guess, and the record stays `prepared`.
  const owner = await fleet.keys.owner(vm.name);
  if (owner?.host !== fleet.hostId) return false;
  vm.holdOwner(owner);
  return true;
}

/**
 * Once adoption settled: a `prepared` record whose VM is not here (removed
 * before its `aborted` could be written) is aborted; one whose VM is here is
 * left to that VM's own recovery.
 */
export async function settlePreparedRecords(outcomes: OutcomeStore, vms: Vm[]): Promise<void> {
  for (const rec of await outcomes.list()) {
    if (rec.outcome !== "prepared") continue;
    if (vms.some((v) => v.name === rec.vm && v.definition.uuid === rec.uuid)) continue;
    await outcomes.record(rec.id, { name: rec.vm, uuid: rec.uuid }, "aborted");
  }
}
