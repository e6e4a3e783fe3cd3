// The per-VM families as Prometheus text: HELP and TYPE always, one line per
// sample, label values escaped so that a VM or disk name cannot break a line.
import t from "tap";
import { escapeLabelValue, formatValue, MetricFamily } from "../../src/metrics/metric-text.js";

t.test("a family with samples, and one without", async (t) => {
  const f = new MetricFamily("vmhostd_vm_vcpus", "vCPUs in the VM's definition", "gauge");
  f.add({ vm: "a" }, 2);
  f.add({ vm: "b", disk: "root" }, 0.5);
  t.equal(f.text(), '# HELP vmhostd_vm_vcpus vCPUs in the VM\'s definition\n# TYPE vmhostd_vm_vcpus gauge\nvmhostd_vm_vcpus{vm="a"} 2\nvmhostd_vm_vcpus{vm="b",disk="root"} 0.5\n');
  t.equal(new MetricFamily("x_total", "help", "counter").text(), "# HELP x_total help\n# TYPE x_total counter\n");
});

t.test("label values and numbers as the text format wants them", async (t) => {
  t.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  t.equal(formatValue(NaN), "NaN");
  t.equal(formatValue(Infinity), "+Inf");
  t.equal(formatValue(-Infinity), "-Inf");
  t.equal(formatValue(1.5e9), "1500000000");
});
