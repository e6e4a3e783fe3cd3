// What this host offers: CPUs, memory, storage pools with free space, qemu and
// its accelerator, and the VMs it holds. Read through systeminformation.
import { rm } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../store/atomic-file.js";
import os from "node:os";
import type { HostContext } from "../vm/host-context.js";
import type { VmRegistry } from "../vm/vm-registry.js";
import type { MaintenanceView } from "./maintenance/host-maintenance.js";

export const DAEMON_VERSION = "0.1.0";

export class HostInventory {
  private cpu: { model: string; cores: number } | undefined;

  constructor(
    private readonly host: HostContext,
    private readonly registry: VmRegistry,
    /** Whether the host is in maintenance, and its evacuation (src/host/maintenance/). */
    private readonly maintenance?: () => MaintenanceView,
  ) {}

  /** What an incoming VM may not take: the memory the host keeps (--host-reserved-mib), so a sender can tell the room left. */
  private get reservedBytes(): number {
    return this.host.config.hostReservedMiB * 1024 * 1024;
  }

  async describe(): Promise<Record<string, unknown>> {
    // Loaded on first use: a daemon nobody asks about its host keeps the memory.
    const { default: si } = await import("systeminformation");
    this.cpu ??= await si.cpu().then((c) => ({ model: `${c.manufacturer} ${c.brand}`.trim(), cores: c.cores }));
    const mem = await si.mem();
    const pools = await this.host.pools.usage();
    const vms = this.registry.list();
    const [state, orphans] = await Promise.all([this.probeStateDir(), this.registry.orphans()]);
    return {
      hostname: os.hostname(),
      daemonVersion: DAEMON_VERSION,
      qemu: { binary: this.host.config.qemu, version: this.host.qemuVersion },
      accel: this.host.accel,
      cpu: { ...this.cpu, logical: os.availableParallelism() },
      memory: { totalBytes: mem.total, availableBytes: mem.available, reservedBytes: this.reservedBytes },
      pools,
      ...(this.maintenance?.() ?? { maintenance: false }),
      vms: { defined: vms.length, running: vms.filter((v) => v.session).length },
      state,
      orphans,
      ...(this.host.fleet ? { fleet: this.host.fleet.status() } : {}),
    };
  }

  /** This host's entry in the fleet registry (`hosts/<id>` in etcd): what an orchestrator places VMs by. */
  async registryEntry(): Promise<Record<string, unknown>> {
    const { default: si } = await import("systeminformation");
    const mem = await si.mem();
    const pools = await this.host.pools.usage();
    const listen = this.host.config.listen;
    return {
      // What peers and orchestrators call: https:// whenever the listener speaks TLS.
      apiUrl: listen ? `${this.host.config.tlsCert ? "https" : "http"}://${listen}` : null,
      daemonVersion: DAEMON_VERSION,
      qemu: { version: this.host.qemuVersion, accel: this.host.accel },
      cpus: os.availableParallelism(),
      memory: { totalBytes: mem.total, availableBytes: mem.available, reservedBytes: this.reservedBytes },
      pools,
      maintenance: this.maintenance?.().maintenance ?? false,
      vms: this.registry.list().filter((v) => v.session).map((v) => v.name),
    };
  }

  /** Whether the daemon can record state right now; a full or read-only state disk is said here. */
  private async probeStateDir(): Promise<{ dir: string; writable: boolean; error?: string }> {
    const dir = this.host.config.stateDir;
    const probe = path.join(dir, ".write-probe");
    try {
      await writeFileAtomic(probe, "probe\n");
      await rm(probe, { force: true });
      return { dir, writable: true };
    } catch (err) {
      return { dir, writable: false, error: `cannot record state: ${(err as Error).message}` };
    }
  }
}
