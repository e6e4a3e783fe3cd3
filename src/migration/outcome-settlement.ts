// The source's end of a migration once RAM has fully left and the guest is
// paused here: have the destination commit, and if that goes unanswered, ask it
// (by the migration's id) what became of the guest until the answer is definite
// or an operator decides. While it does not know, the VM shows the guest paused
// with reason `outcome-unknown`, and nothing may `cont` it (vm/migration-outcome.ts).
import { EtcdUnreachable, VmOwnedElsewhere } from "../errors.js";
import type { Job } from "../jobs/job-registry.js";
import { endEntry } from "../vm/action-journal.js";
import type { HostContext } from "../vm/host-context.js";
import type { Vm } from "../vm/vm.js";
import type { IncomingState } from "./migration-schema.js";
import { decideOperatorOutcome, decideOutcome, type DestinationAnswer, type OwnerCheck } from "./outcome-decision.js";
import type { OutcomeRecord } from "./outcome-record.js";
import type { PeerClient } from "./peer-client.js";

/** How often the destination is asked for the outcome while it is unknown. */
export const ASK_EVERY_MS = 2_000;
const COMMIT_TIMEOUT_MS = 30_000;
const ASK_TIMEOUT_MS = 5_000;

export interface Settlement {
  vm: Vm;
  peer: PeerClient;
  /** The migration's id; absent for a journal entry written before ids (then asked by name). */
  migration: string | undefined;
  job?: Job;
  /** The guest runs on the destination: ends qemu here and removes the VM. */
  removeHere(): Promise<void>;
}

export type Settled = "committed" | "resumed-here";

/**
 * `first`: "commit" right after RAM arrived; "ask" after a restart of this
 * daemon (the commit may or may not have been sent). Resolves once the copy
 * here is removed or running again.
 */
export async function settleOutcome(host: HostContext, s: Settlement, first: "commit" | "ask"): Promise<Settled> {
  const { vm, peer } = s;
  if (first === "commit" && (await commit(s))) return finish(s, "committed");
  const since = new Date();
  s.job?.setPhase("outcome-unknown");
  vm.migrationOutcome.enter({ since: since.toISOString(), destination: peer.url, ...(s.migration ? { migration: s.migration } : {}) });
  vm.log.warn({ destination: peer.url, migration: s.migration }, "migration outcome unknown: the guest stays paused here until the destination says");
  let decided: { settled: Settled; operator?: { done(err?: unknown): void } };
  try {
    decided = await untilDecided(host, s, since.getTime());
  } finally {
    // Before acting: the state shown from here on is the one the action leaves.
    vm.migrationOutcome.leave();
  }
  try {
    await finish(s, decided.settled);
  } catch (err) {
    decided.operator?.done(err);
    throw err;
  }
  decided.operator?.done();
  return decided.settled;
}

/** Asks until the destination's answer (with the owner check) or an operator's outcome decides. */
async function untilDecided(host: HostContext, s: Settlement, since: number): Promise<{ settled: Settled; operator?: { done(err?: unknown): void } }> {
  const { vm } = s;
  for (;;) {
    const answer = await ask(s);
    let step = decideOutcome(answer);
    if (step === "check-owner") step = decideOutcome(answer, await ownerCheck(host, vm));
    const waited = { waitedMs: Date.now() - since, answer };
    if (step === "remove-here" || (step === "commit-again" && (await commit(s)))) {
      vm.log.info(waited, "the destination runs the guest");
      return { settled: "committed" };
    }
    if (step === "resume-here") {
      vm.log.warn(waited, "the destination never ran the guest and the owner key is still ours: it runs here again");
      return { settled: "resumed-here" };
    }
    const request = await vm.migrationOutcome.nextRequest(ASK_EVERY_MS);
    if (!request) continue;
    const decision = decideOperatorOutcome(request.outcome, request.outcome === "aborted" ? await ownerCheck(host, vm) : "not-fleet");
    if (decision.step === "refuse") {
      request.done(decision.why === "owned-elsewhere" ? await ownedElsewhere(host, vm) : new EtcdUnreachable("cannot check the owner key"));
      continue;
    }
    vm.log.warn({ waitedMs: Date.now() - since, answer, outcome: request.outcome }, "the operator resolved the migration's outcome");
    return { settled: decision.step === "remove-here" ? "committed" : "resumed-here", operator: request };
  }
}

async function finish(s: Settlement, settled: Settled): Promise<Settled> {
  if (settled === "committed") await s.removeHere();
  else {
    // Nothing runs there and nothing will: the guest may run here again.
    const session = s.vm.session;
    if (session) {
      await session.execute("cont");
      if (session.status !== "running") await session.refreshStatus().catch(() => {});
    }
    await endEntry(s.vm, "quiet");
  }
  // The destination may prune its record now; if this is lost, it prunes it later anyway.
  if (s.migration) await s.peer.request("POST", `/v1/migrations/${s.migration}/acknowledge`, undefined, ASK_TIMEOUT_MS).catch(() => {});
  return settled;
}

async function commit(s: Settlement): Promise<boolean> {
  const r = await s.peer.request("POST", `/v1/incoming/${s.vm.name}/commit`, undefined, COMMIT_TIMEOUT_MS).catch(() => undefined);
  return r?.status === 200;
}

/** The destination's answer; anything but a record (or, without an id, its state by name) is `unknown`. */
async function ask(s: Settlement): Promise<DestinationAnswer> {
  const { vm, peer } = s;
  if (s.migration) {
    const r = await peer.request<OutcomeRecord>("GET", `/v1/migrations/${s.migration}`, undefined, ASK_TIMEOUT_MS).catch(() => undefined);
    return r?.status === 200 ? r.body.outcome : "unknown";
  }
  const r = await peer
    .request<{ state: IncomingState | "unknown" }>("GET", `/v1/incoming/${vm.name}?uuid=${vm.definition.uuid}`, undefined, ASK_TIMEOUT_MS)
    .catch(() => undefined);
  const state = r?.status === 200 ? r.body.state : "unknown";
  return state === "running" ? "committed" : state === "receiving" ? "prepared" : state === "aborted" ? "aborted" : "unknown";
}

/** Fleet mode: whether the owner key still names this host (taken again if nobody holds it). */
async function ownerCheck(host: HostContext, vm: Vm): Promise<OwnerCheck> {
  const fleet = host.fleet;
  if (!fleet) return "not-fleet";
  try {
    const owner = await fleet.keys.owner(vm.name);
    if (owner && owner.host !== fleet.hostId) return "elsewhere";
    vm.holdOwner(owner ?? (await fleet.keys.acquire(vm.name, vm.definition.ha)));
    return "ours";
  } catch (err) {
    return err instanceof VmOwnedElsewhere ? "elsewhere" : "unreachable";
  }
}

async function ownedElsewhere(host: HostContext, vm: Vm): Promise<VmOwnedElsewhere> {
  const owner = await host.fleet?.keys.owner(vm.name).catch(() => undefined);
  return new VmOwnedElsewhere(vm.name, owner?.host ?? "unknown", owner?.revision ?? "0");
}
