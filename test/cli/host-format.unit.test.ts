// formatHost: every line present even when the daemon leaves a field out (an
// older daemon, a pool whose filesystem cannot be read), never "undefined".
import t from "tap";
import { formatHost } from "../../src/cli/host-command.js";

t.test("a full inventory", async (t) => {
  const out = formatHost({
    hostname: "kvm1",
    daemonVersion: "0.1.0",
    qemu: { binary: "qemu-system-x86_64", version: "7.2.22" },
    accel: "kvm",
    cpu: { model: "AMD EPYC", cores: 8, logical: 16 },
    memory: { totalBytes: 64 * 2 ** 30, availableBytes: 40 * 2 ** 30, reservedBytes: 2 ** 30 },
    pools: [
      { name: "images", dir: "/var/lib/vmhostd/images", freeBytes: 100 * 2 ** 30, totalBytes: 200 * 2 ** 30 },
      { name: "fast", dir: "/srv/fast", freeBytes: null, totalBytes: null },
    ],
    maintenance: false,
    vms: { defined: 12, running: 3 },
    state: { dir: "/var/lib/vmhostd", writable: true },
  });
  t.match(out, /^Accelerator:\s+kvm$/m);
  t.match(out, /^CPUs:\s+16 logical, 8 cores$/m);
  t.match(out, /^Memory:\s+40\.0 GiB available of 64\.0 GiB, 1\.0 GiB reserved for the host$/m);
  t.match(out, /^Pools:\s+images 100\.0 GiB free of 200\.0 GiB \(\/var\/lib\/vmhostd\/images\)$/m);
  t.match(out, /^\s+fast - free of - \(\/srv\/fast\)$/m, "a second pool on its own line");
  t.match(out, /^VMs:\s+12 defined, 3 running$/m);
});

t.test("missing fields print as -", async (t) => {
  const out = formatHost({ state: { dir: "/s", writable: false, error: "disk full" } });
  t.notMatch(out, /undefined|NaN/);
  t.match(out, /^Pools:\s+-$/m);
  t.match(out, /^State directory:\s+\/s \(NOT writable: disk full\)$/m);
});
