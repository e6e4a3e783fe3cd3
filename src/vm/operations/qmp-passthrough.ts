// One QMP command from an operator, run on the daemon's own connection to the
// VM's qemu. The policy (src/qmp/passthrough-policy.ts) decides first, before
// anything else is looked at. Queries run without the operation lock: they
// change nothing, and they are how an operator looks into a VM stuck behind a
// hung operation. Anything else takes the lock, so it cannot race a migration, a
// hot-plug or a start, and is refused while a backup job runs: the job's block
// graph must stay as the job left it. Every call is logged and evented with its
// secrets redacted; a refusal is logged too.
import type { Logger } from "pino";
import { QmpNotAllowed, VmBusy, VmStateConflict } from "../../errors.js";
import { decidePassthrough, type PassthroughMode } from "../../qmp/passthrough-policy.js";
import { redactArguments } from "../../qmp/secret-redaction.js";
import type { Vm } from "../vm.js";
import type { ActionOf } from "../../definition/vm-action.js";

const PASSTHROUGH_TIMEOUT_MS = 30_000;

/** The request's logger (so a line carries the request id), or any pino logger. */
export type PassthroughLog = Pick<Logger, "info" | "warn">;

/** `underLock` runs a command that may change the VM under the VM's operation lock (perform supplies it). */
export async function runPassthrough(
  vm: Vm,
  action: ActionOf<"qmp">,
  mode: PassthroughMode,
  log: PassthroughLog,
  underLock: (send: () => Promise<unknown>) => Promise<unknown>,
): Promise<unknown> {
  const cmd = { execute: action.command, arguments: action.arguments };
  const shown = redactArguments(cmd.arguments);
  const entry = { vm: vm.name, command: cmd.execute, ...(shown ? { arguments: shown } : {}) };
  const decision = decidePassthrough(cmd.execute, mode);
  if (!decision.allowed) {
    log.warn({ ...entry, reason: decision.reason }, "qmp pass-through refused");
    throw new QmpNotAllowed(vm.name, cmd.execute, decision.reason);
  }
  const send = async (): Promise<unknown> => {
    const session = vm.session;
    if (!session?.connected) throw new VmStateConflict(vm.name, vm.state(), `send ${cmd.execute} to`);
    if (decision.takesLock && vm.job?.state === "running") throw new VmBusy(vm.name, vm.job.kind);
    if (decision.takesLock) log.warn(entry, "qmp pass-through may change the VM behind the daemon's back");
    else log.info(entry, "qmp pass-through");
    vm.publish("qmp.passthrough", { command: cmd.execute, ...(shown ? { arguments: shown } : {}) });
    return await session.executeUntyped(cmd.execute, cmd.arguments, PASSTHROUGH_TIMEOUT_MS);
  };
  return decision.takesLock ? await underLock(send) : await send();
}
