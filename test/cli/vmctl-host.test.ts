// `vmctl host` prints what GET /v1/host says of the host, one field a line (as
// `virsh nodeinfo`): the figures must be the daemon's, not made up or stale.
import os from "node:os";
import t from "tap";
import { installGuest, runVmctl, startDaemon } from "../helpers/daemon.js";

t.test("vmctl host shows the host's inventory, and --json the daemon's answer", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const guest = await installGuest(d);
  await d.api.json("POST", "/v1/vms", { name: "h1", memoryMiB: 64, boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline } });
  await d.api.json("POST", "/v1/vms", { name: "h2", memoryMiB: 64, boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline } });
  const host = await d.api.json<{ qemu: { version: string }; cpu: { logical: number }; pools: { name: string }[] }>("GET", "/v1/host");

  const r = await runVmctl(d, "host");
  t.equal(r.code, 0, r.stderr);
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s+(.*)$`, "m").exec(r.stdout)?.[1];
  t.equal(field("Hostname"), os.hostname());
  t.equal(field("Accelerator"), "tcg", "the daemon runs with --accel tcg");
  t.match(field("qemu") ?? "", new RegExp(`^${host.qemu.version.replace(/\./g, "\\.")} \\(`), "qemu's version as the daemon read it");
  t.match(field("CPUs") ?? "", new RegExp(`^${host.cpu.logical} logical`));
  t.equal(field("VMs"), "2 defined, 0 running", "counts the VMs just defined");
  t.match(field("Memory") ?? "", /^\d+\.\d GiB available of \d+\.\d GiB, /);
  t.match(field("Pools") ?? "", new RegExp(`^${host.pools[0]!.name} \\d+\\.\\d GiB free of \\d+\\.\\d GiB \\(${d.stateDir}`));
  t.match(field("State directory") ?? "", /\(writable\)$/);

  const j = await runVmctl(d, "--json", "host");
  t.equal(j.code, 0, j.stderr);
  const parsed = JSON.parse(j.stdout) as { vms: { defined: number; running: number }; accel: string };
  t.same(parsed.vms, { defined: 2, running: 0 });
  t.equal(parsed.accel, "tcg");
});
