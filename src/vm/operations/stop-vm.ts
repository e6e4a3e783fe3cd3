// Hard stop: qemu is told to quit (it flushes its block layer first), and is
// signalled only if it does not go. The guest gets no say, and neither does the
// state disk: the journal entry is written if it can be, and a full disk never
// keeps running a guest the operator wants stopped.
import { setTimeout as sleep } from "node:timers/promises";
import { VmStateConflict } from "../../errors.js";
import { signalProcess } from "../../qemu/qemu-process.js";
import type { Vm } from "../vm.js";
import type { ActionRun } from "./action-run.js";

const QUIT_GRACE_MS = 5_000;
const TERM_GRACE_MS = 5_000;

export async function stopVm(vm: Vm, run: ActionRun): Promise<void> {
  if (!vm.session) throw new VmStateConflict(vm.name, vm.settledState(), "stop");
  // Journaled best effort (action-journal.ts): a full state disk never keeps a guest running.
  await run.journaled({ kind: "stop" }, () => killQemu(vm, "host-stop"));
}

/** Ends the VM's qemu by the gentlest means that works: QMP quit, SIGTERM, SIGKILL. */
export async function killQemu(vm: Vm, reason: string): Promise<void> {
  const session = vm.session;
  if (!session) return;
  vm.expectExit(reason);
  const { pid, procStartTicks } = session.record;
  const stopped = vm.waitStopped();
  // qemu may hang up before it replies to quit; that is success, not an error.
  await session.execute("quit", undefined, QUIT_GRACE_MS).catch(() => {});
  if (await settles(stopped, QUIT_GRACE_MS)) return;
  vm.log.warn("qemu did not quit; sending SIGTERM");
  await signalProcess(pid, procStartTicks, "SIGTERM");
  if (await settles(stopped, TERM_GRACE_MS)) return;
  vm.log.warn("qemu ignored SIGTERM; sending SIGKILL");
  // SIGKILL also ends a SIGSTOPped qemu.
  await signalProcess(pid, procStartTicks, "SIGKILL");
  await stopped;
}

async function settles(p: Promise<void>, ms: number): Promise<boolean> {
  const ac = new AbortController();
  const res = await Promise.race([p.then(() => true), sleep(ms, false, { signal: ac.signal }).catch(() => false)]);
  ac.abort();
  return res;
}
