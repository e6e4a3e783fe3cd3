// The per-VM Prometheus figures, read at each scrape: the definition's sizes and
// the state from the daemon, CPU and NIC counters from /proc and sysfs, disk and
// balloon figures from qemu (vm-sampler.ts). Written as text (metric-text.ts),
// followed by the daemon's own figures from the registry in metric-hooks.ts.
import { vmStates } from "../vm/vm-state.js";
import type { Vm } from "../vm/vm.js";
import { registry } from "./metric-hooks.js";
import { droppedPackets } from "../net/nic-filters.js";
import { vmTaps } from "../net/vm-taps.js";
import { VmSampler, type VmSample } from "./vm-sampler.js";
import { fillLimits, readLimitSamples } from "./limit-metrics.js";
import { MetricFamily, type MetricType } from "./metric-text.js";

const sampler = new VmSampler();

/** The per-VM families, made afresh for each scrape (metric-text.ts says why not prom-client). */
function vmFamilies() {
  const f = (name: string, help: string, type: MetricType): MetricFamily => new MetricFamily(name, help, type);
  return {
    state: f("vmhostd_vm_state", "1 for the VM's current state, 0 for the others", "gauge"),
    vcpus: f("vmhostd_vm_vcpus", "vCPUs in the VM's definition", "gauge"),
    memory: f("vmhostd_vm_memory_bytes", "Memory in the VM's definition", "gauge"),
    balloon: f("vmhostd_vm_balloon_actual_bytes", "The guest's memory as the balloon reports it", "gauge"),
    stale: f("vmhostd_vm_metrics_stale", "1 when qemu did not answer in time and its QMP figures are from an earlier scrape", "gauge"),
    cpu: f("vmhostd_vm_cpu_seconds_total", "CPU time of the VM's qemu process (user + system)", "counter"),
    readBytes: f("vmhostd_vm_disk_read_bytes_total", "Bytes read by the guest from the disk", "counter"),
    writeBytes: f("vmhostd_vm_disk_write_bytes_total", "Bytes written by the guest to the disk", "counter"),
    readOps: f("vmhostd_vm_disk_read_ops_total", "Read requests", "counter"),
    writeOps: f("vmhostd_vm_disk_write_ops_total", "Write requests", "counter"),
    flushOps: f("vmhostd_vm_disk_flush_ops_total", "Flush requests", "counter"),
    readTime: f("vmhostd_vm_disk_read_time_seconds_total", "Time spent on read requests, summed", "counter"),
    writeTime: f("vmhostd_vm_disk_write_time_seconds_total", "Time spent on write requests, summed", "counter"),
    flushTime: f("vmhostd_vm_disk_flush_time_seconds_total", "Time spent on flush requests, summed", "counter"),
    rxBytes: f("vmhostd_vm_nic_receive_bytes_total", "Bytes the guest received on a bridged NIC", "counter"),
    txBytes: f("vmhostd_vm_nic_transmit_bytes_total", "Bytes the guest sent on a bridged NIC", "counter"),
    rxPackets: f("vmhostd_vm_nic_receive_packets_total", "Packets the guest received on a bridged NIC", "counter"),
    txPackets: f("vmhostd_vm_nic_transmit_packets_total", "Packets the guest sent on a bridged NIC", "counter"),
    filterDropped: f("vmhostd_vm_nic_filter_dropped_packets_total", "Packets from the guest that the NIC's filter rules dropped (nft counter named after the tap)", "counter"),
  };
}
type VmFamilies = ReturnType<typeof vmFamilies>;

/** Reads every VM's figures (a hung qemu costs at most the QMP deadline) and renders the text format. */
export async function renderMetrics(vms: Vm[]): Promise<string> {
  // nft is asked only while some VM runs with a tap.
  const tapped = vms.some((v) => v.session && vmTaps(v.definition).length > 0);
  const [samples, dropped, limits] = await Promise.all([
    sampler.sample(vms),
    tapped ? droppedPackets() : new Map<string, number>(),
    readLimitSamples(vms),
  ]);
  // Made afresh and filled without an await in between: a concurrent scrape sees one whole set or the other.
  const vm = vmFamilies();
  for (const v of vms) {
    fillVm(vm, v, samples.get(v.name));
    if (!v.session) continue;
    for (const tap of vmTaps(v.definition)) {
      const n = dropped.get(tap.name);
      if (n !== undefined) vm.filterDropped.add({ vm: v.name, nic: String(tap.nic) }, n);
    }
  }
  fillLimits(limits);
  let text = "";
  for (const family of Object.values(vm)) text += family.text();
  return text + (await registry.metrics());
}

function fillVm(vm: VmFamilies, v: Vm, sample: VmSample | undefined): void {
  const labels = { vm: v.name };
  const current = v.state();
  for (const state of vmStates) vm.state.add({ vm: v.name, state }, state === current ? 1 : 0);
  vm.vcpus.add(labels, v.definition.vcpus);
  vm.memory.add(labels, v.definition.memoryMiB * 2 ** 20);
  if (!sample) return;
  vm.stale.add(labels, sample.stale ? 1 : 0);
  if (sample.cpuSeconds !== undefined) vm.cpu.add(labels, sample.cpuSeconds);
  for (const [nic, n] of sample.nics) {
    const l = { vm: v.name, nic: String(nic) };
    vm.rxBytes.add(l, n.rxBytes);
    vm.txBytes.add(l, n.txBytes);
    vm.rxPackets.add(l, n.rxPackets);
    vm.txPackets.add(l, n.txPackets);
  }
  const qmp = sample.qmp;
  if (!qmp) return;
  if (qmp.balloonBytes !== undefined) vm.balloon.add(labels, qmp.balloonBytes);
  for (const [disk, d] of qmp.disks) {
    const l = { vm: v.name, disk };
    vm.readBytes.add(l, d.readBytes);
    vm.writeBytes.add(l, d.writeBytes);
    vm.readOps.add(l, d.readOps);
    vm.writeOps.add(l, d.writeOps);
    vm.flushOps.add(l, d.flushOps);
    vm.readTime.add(l, d.readSeconds);
    vm.writeTime.add(l, d.writeSeconds);
    vm.flushTime.add(l, d.flushSeconds);
  }
}
