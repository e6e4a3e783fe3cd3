// The per-VM Prometheus figures, read at each scrape: the definition's sizes and
// the state from the daemon, CPU and NIC counters from /proc and sysfs, disk and
// balloon figures from qemu (vm-sampler.ts). Rendered with the daemon's own
// figures from the registry in metric-hooks.ts.
import { Counter, Gauge } from "prom-client";
import { vmStates } from "../vm/vm-state.js";
import type { Vm } from "../vm/vm.js";
import { registry } from "./metric-hooks.js";
import { droppedPackets } from "../net/nic-filters.js";
import { vmTaps } from "../net/vm-taps.js";
import { VmSampler, type VmSample } from "./vm-sampler.js";
import { fillLimits, readLimitSamples } from "./limit-metrics.js";

const sampler = new VmSampler();

const vm = {
  state: gauge("vmhostd_vm_state", "1 for the VM's current state, 0 for the others", ["vm", "state"]),
  vcpus: gauge("vmhostd_vm_vcpus", "vCPUs in the VM's definition", ["vm"]),
  memory: gauge("vmhostd_vm_memory_bytes", "Memory in the VM's definition", ["vm"]),
  balloon: gauge("vmhostd_vm_balloon_actual_bytes", "The guest's memory as the balloon reports it", ["vm"]),
  stale: gauge("vmhostd_vm_metrics_stale", "1 when qemu did not answer in time and its QMP figures are from an earlier scrape", ["vm"]),
  cpu: counter("vmhostd_vm_cpu_seconds_total", "CPU time of the VM's qemu process (user + system)", ["vm"]),
  readBytes: counter("vmhostd_vm_disk_read_bytes_total", "Bytes read by the guest from the disk", ["vm", "disk"]),
  writeBytes: counter("vmhostd_vm_disk_write_bytes_total", "Bytes written by the guest to the disk", ["vm", "disk"]),
  readOps: counter("vmhostd_vm_disk_read_ops_total", "Read requests", ["vm", "disk"]),
  writeOps: counter("vmhostd_vm_disk_write_ops_total", "Write requests", ["vm", "disk"]),
  flushOps: counter("vmhostd_vm_disk_flush_ops_total", "Flush requests", ["vm", "disk"]),
  readTime: counter("vmhostd_vm_disk_read_time_seconds_total", "Time spent on read requests, summed", ["vm", "disk"]),
  writeTime: counter("vmhostd_vm_disk_write_time_seconds_total", "Time spent on write requests, summed", ["vm", "disk"]),
  flushTime: counter("vmhostd_vm_disk_flush_time_seconds_total", "Time spent on flush requests, summed", ["vm", "disk"]),
  rxBytes: counter("vmhostd_vm_nic_receive_bytes_total", "Bytes the guest received on a bridged NIC", ["vm", "nic"]),
  txBytes: counter("vmhostd_vm_nic_transmit_bytes_total", "Bytes the guest sent on a bridged NIC", ["vm", "nic"]),
  rxPackets: counter("vmhostd_vm_nic_receive_packets_total", "Packets the guest received on a bridged NIC", ["vm", "nic"]),
  txPackets: counter("vmhostd_vm_nic_transmit_packets_total", "Packets the guest sent on a bridged NIC", ["vm", "nic"]),
  filterDropped: counter("vmhostd_vm_nic_filter_dropped_packets_total", "Packets from the guest that the NIC's filter rules dropped (nft counter named after the tap)", ["vm", "nic"]),
};

function gauge<L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> {
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

/** Each scrape sets these afresh from qemu's own counters; a VM that is gone loses its series. */
function counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L> {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

/** Reads every VM's figures (a hung qemu costs at most the QMP deadline) and renders the text format. */
export async function renderMetrics(vms: Vm[]): Promise<string> {
  // nft is asked only while some VM runs with a tap.
  const tapped = vms.some((v) => v.session && vmTaps(v.definition).length > 0);
  const [samples, dropped, limits] = await Promise.all([
    sampler.sample(vms),
    tapped ? droppedPackets() : new Map<string, number>(),
    readLimitSamples(vms),
  ]);
  // Reset and refilled without an await in between: a concurrent scrape sees one whole set or the other.
  for (const m of Object.values(vm)) m.reset();
  for (const v of vms) {
    fillVm(v, samples.get(v.name));
    if (!v.session) continue;
    for (const tap of vmTaps(v.definition)) {
      const n = dropped.get(tap.name);
      if (n !== undefined) vm.filterDropped.inc({ vm: v.name, nic: String(tap.nic) }, n);
    }
  }
  fillLimits(limits);
  return registry.metrics();
}

function fillVm(v: Vm, sample: VmSample | undefined): void {
  const labels = { vm: v.name };
  const current = v.state();
  for (const state of vmStates) vm.state.set({ vm: v.name, state }, state === current ? 1 : 0);
  vm.vcpus.set(labels, v.definition.vcpus);
  vm.memory.set(labels, v.definition.memoryMiB * 2 ** 20);
  if (!sample) return;
  vm.stale.set(labels, sample.stale ? 1 : 0);
  if (sample.cpuSeconds !== undefined) vm.cpu.inc(labels, sample.cpuSeconds);
  for (const [nic, n] of sample.nics) {
    const l = { vm: v.name, nic: String(nic) };
    vm.rxBytes.inc(l, n.rxBytes);
    vm.txBytes.inc(l, n.txBytes);
    vm.rxPackets.inc(l, n.rxPackets);
    vm.txPackets.inc(l, n.txPackets);
  }
  const qmp = sample.qmp;
  if (!qmp) return;
  if (qmp.balloonBytes !== undefined) vm.balloon.set(labels, qmp.balloonBytes);
  for (const [disk, d] of qmp.disks) {
    const l = { vm: v.name, disk };
    vm.readBytes.inc(l, d.readBytes);
    vm.writeBytes.inc(l, d.writeBytes);
    vm.readOps.inc(l, d.readOps);
    vm.writeOps.inc(l, d.writeOps);
    vm.flushOps.inc(l, d.flushOps);
    vm.readTime.inc(l, d.readSeconds);
    vm.writeTime.inc(l, d.writeSeconds);
    vm.flushTime.inc(l, d.flushSeconds);
  }
}
