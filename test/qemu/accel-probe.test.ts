// The probe behind --accel auto, against the real qemu: TCG always runs it;
// `auto` picks KVM only when KVM really runs a guest, and says which it chose.
import t from "tap";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { probeAccel, resolveAccel } from "../../src/qemu/accel-probe.js";

t.test("the probe guest runs under TCG", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-probe-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const disk = Buffer.alloc(1024 * 1024);
  Buffer.from([0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]).copy(disk, 0);
  disk[510] = 0x55;
  disk[511] = 0xaa;
  await writeFile(path.join(dir, "p.img"), disk);
  const r = await probeAccel("qemu-system-x86_64", "tcg", path.join(dir, "p.img"));
  t.ok(r.ok, `TCG probe ran (${r.ms} ms: ${r.detail})`);
});

t.test("auto chooses an accelerator and logs why", async (t) => {
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });
  const accel = await resolveAccel("auto", "qemu-system-x86_64", log);
  t.ok(accel === "kvm" || accel === "tcg", `chose ${accel}`);
  t.match(lines.join(""), /accel auto/, "the choice is logged");
  t.equal(await resolveAccel("tcg", "qemu-system-x86_64", log), "tcg", "an explicit setting is taken as given");
});
