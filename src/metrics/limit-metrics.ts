// Each running VM's limits as it holds them (read back from its cgroup, qemu's
// throttle group and tc, as the VM's view has them): one gauge, a series per limit that is set.
import { Gauge } from "prom-client";
import type { VmLimits } from "../limits/limits-schema.js";
import type { Vm } from "../vm/vm.js";
import { registry } from "./metric-hooks.js";
import { QMP_SAMPLE_DEADLINE_MS } from "./vm-sampler.js";

const limitGauge = new Gauge({
  name: "vmhostd_vm_limit",
  help: "A limit the running VM holds, as read back from the host (cpu_max_percent, cpu_weight, memory_hard_bytes, pids, disk_*, network_*_bits_per_second)",
  labelNames: ["vm", "limit"],
  registers: [registry],
});

/** The limits as metric series: name → value in base units (bytes, bits per second). */
export function limitSeries(l: VmLimits): [string, number][] {
  const out: [string, number][] = [];
  const add = (name: string, v: number | undefined, scale = 1): void => {
    if (v !== undefined) out.push([name, v * scale]);
  };
  add("cpu_weight", l.cpu?.weight);
  add("cpu_max_percent", l.cpu?.maxPercent);
  add("memory_hard_bytes", l.memory?.hardMiB, 2 ** 20);
  add("pids", l.pids);
  add("disk_iops", l.disk?.iops);
  add("disk_read_iops", l.disk?.readIops);
  add("disk_write_iops", l.disk?.writeIops);
  add("disk_bytes_per_second", l.disk?.bps);
  add("disk_read_bytes_per_second", l.disk?.readBps);
  add("disk_write_bytes_per_second", l.disk?.writeBps);
  add("network_ingress_bits_per_second", l.network?.ingressKbps, 1000);
  add("network_egress_bits_per_second", l.network?.egressKbps, 1000);
  return out;
}

/**
 * Read before the registry is reset, so a scrape never shows a half-filled set.
 * Each VM's limits are those its view holds, read again only when an event or an
 * operation may have changed them; a read that qemu keeps waiting is not waited
 * for beyond the scrape's QMP deadline (the last limits read are shown).
 */
export async function readLimitSamples(vms: Vm[]): Promise<Map<string, VmLimits>> {
  const out = new Map<string, VmLimits>();
  await Promise.all(
    vms.map(async (v) => {
      if (!v.session) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        v.refresh().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, QMP_SAMPLE_DEADLINE_MS))),
      ]).finally(() => clearTimeout(timer));
      const l = v.limitsHeld;
      if (l) out.set(v.name, l);
    }),
  );
  return out;
}

export function fillLimits(samples: Map<string, VmLimits>): void {
  limitGauge.reset();
  for (const [vm, l] of samples) for (const [limit, v] of limitSeries(l)) limitGauge.set({ vm, limit }, v);
}
