// What the host does to its guests when it boots and when it shuts down
// (vmhostd-guests.service runs these through vmctl): start the autostart VMs,
// and shut every running VM down gracefully. Each acts on all VMs in parallel
// over the ordinary API and reports one outcome per VM; a failure of one VM
// never stops the others.
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError, type ApiClient } from "./api-client.js";
import type { VmJson } from "./vm-format.js";

export interface VmOutcome {
  name: string;
  result: "started" | "stopped" | "skipped" | "failed";
  /** The VM's state after the outcome, when known. */
  state?: string;
  /** How the run ended, for a VM that was shut down. */
  lastExit?: string;
  error?: { code: string; message: string };
}

/**
 * A crashed VM is started too: at host boot there is a new life for every guest,
 * and with a run directory on persistent storage a power loss leaves every VM that
 * was running "crashed"; skipping those would leave the host empty after it.
 */
const STARTABLE = new Set(["stopped", "crashed"]);
/** No qemu process behind these: nothing to shut down. "error" is a VM the daemon cannot read. */
const DOWN = new Set(["stopped", "crashed", "error"]);
/** How often to ask again while a VM is busy with another operation (a start, a shutdown). */
const BUSY_RETRY_MS = 500;

/** Starts every autostart VM that is not running. */
export async function autostartAll(api: ApiClient): Promise<VmOutcome[]> {
  const { vms } = await api.json<{ vms: VmJson[] }>("GET", "/v1/vms");
  return Promise.all(
    vms
      .filter((vm) => vm.definition.autostart)
      .map(async (vm): Promise<VmOutcome> => {
        if (!STARTABLE.has(vm.state)) return { name: vm.name, result: "skipped", state: vm.state };
        try {
          const after = await api.json<VmJson>("POST", `/v1/vms/${encodeURIComponent(vm.name)}/start`);
          return { name: vm.name, result: "started", state: after.state };
        } catch (err) {
          return failed(vm.name, err);
        }
      }),
  );
}

/**
 * ACPI shutdown of every VM whose qemu is alive, each stopped hard by the daemon
 * after `timeoutSec`. A paused guest cannot see the power button and is stopped at
 * the timeout. A VM busy with another operation is asked again until the deadline.
 */
export async function shutdownAll(api: ApiClient, timeoutSec: number): Promise<VmOutcome[]> {
  const { vms } = await api.json<{ vms: VmJson[] }>("GET", "/v1/vms");
  const deadline = Date.now() + timeoutSec * 1000;
  return Promise.all(vms.filter((vm) => !DOWN.has(vm.state)).map((vm) => shutdownOne(api, vm.name, deadline)));
}

async function shutdownOne(api: ApiClient, name: string, deadline: number): Promise<VmOutcome> {
  const path = `/v1/vms/${encodeURIComponent(name)}`;
  for (;;) {
    // Time spent waiting for a busy VM comes out of its grace period: the caller's bound holds.
    const timeoutSec = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
    try {
      const after = await api.json<VmJson>("POST", `${path}/shutdown`, { timeoutSec });
      return { name, result: "stopped", state: after.state, lastExit: after.lastExit?.reason };
    } catch (err) {
      if (err instanceof ApiError && err.code === "VMH_ERR_VM_BUSY" && Date.now() < deadline) {
        await sleep(BUSY_RETRY_MS);
        continue;
      }
      // Refused for its state: it may have powered off meanwhile, which is what was wanted.
      if (err instanceof ApiError && err.code === "VMH_ERR_VM_STATE") {
        const now = await api.json<VmJson>("GET", path).catch(() => undefined);
        if (now && DOWN.has(now.state)) return { name, result: "stopped", state: now.state, lastExit: now.lastExit?.reason };
      }
      return failed(name, err);
    }
  }
}

function failed(name: string, err: unknown): VmOutcome {
  const code = err instanceof ApiError ? err.code : "VMCTL_ERROR";
  return { name, result: "failed", error: { code, message: (err as Error).message } };
}

/** One line per VM for people: "web1: running", "web2: FAILED: ... (CODE)". */
export function formatOutcome(o: VmOutcome): string {
  switch (o.result) {
    case "started":
      return `${o.name}: ${o.state ?? "started"}`;
    case "stopped":
      return `${o.name}: ${o.state ?? "stopped"}${o.lastExit ? ` (${o.lastExit})` : ""}`;
    case "skipped":
      return `${o.name}: already ${o.state}, left as is`;
    case "failed":
      return `${o.name}: FAILED: ${o.error?.message} (${o.error?.code})`;
  }
}
