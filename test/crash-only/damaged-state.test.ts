// Damage the daemon cannot repair by itself is shown, never acted on by killing a
// guest: a corrupt definition puts its VM in state `error` (its qemu still
// running, the operator may stop it), a torn runtime record is recovered from the
// pidfile, and a qemu that belongs to no VM is reported and left alone.
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { defineGuestVm, startDaemon, waitForVm } from "../helpers/daemon.js";
import { isSameProcess, readProcStartTicks } from "../../src/qemu/qemu-process.js";

const procTicks = async (pid: number): Promise<number> => (await readProcStartTicks(pid)) ?? -1;

t.test("corrupt files and orphan qemu are reported, guests keep running", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  for (const n of ["bad-def", "bad-rec", "orphan", "sound"]) await defineGuestVm(d, n);
  const pids: Record<string, number> = {};
  for (const n of ["bad-def", "bad-rec", "orphan", "sound"]) pids[n] = (await d.api.json<VmJson>("POST", `/v1/vms/${n}/start`)).pid!;

  await d.kill();
  await writeFile(path.join(d.stateDir, "vms/bad-def/definition.json"), '{"name": "bad-def", "vcp');
  await writeFile(path.join(d.runDir, "vms/bad-rec/runtime.json"), "{ torn");
  // The VM's directory is gone (an operator's mistake, a restore from backup...) but its qemu runs on.
  await rm(path.join(d.stateDir, "vms/orphan"), { recursive: true });
  await d.restart();

  const bad = await waitForVm<VmJson>(d, "bad-def", (v) => v.state === "error");
  t.match(bad.error, /definition unreadable/, "says why");
  t.equal(bad.pid, pids["bad-def"], "its qemu is adopted, not killed");
  const refused = await d.api.request("POST", "/v1/vms/bad-def/pause");
  t.equal(refused.status, 409, "only a stop is allowed on a VM in error");

  const rec = await waitForVm<VmJson>(d, "bad-rec", (v) => v.state === "running");
  t.equal(rec.pid, pids["bad-rec"], "a torn runtime record is recovered from the pidfile");
  t.equal((await waitForVm<VmJson>(d, "sound", (v) => v.state === "running")).pid, pids.sound);

  const host = await d.api.json<{ orphans: { pid: number; name: string }[] }>("GET", "/v1/host");
  t.same(host.orphans.map((o) => [o.name, o.pid]), [["orphan", pids.orphan]], "the orphan qemu is reported");
  t.doesNotThrow(() => process.kill(pids.orphan!, 0), "and left running");
  t.match(d.log(), /belongs to no VM; left running for the operator/);

  const stopped = await d.api.json<VmJson>("POST", "/v1/vms/bad-def/stop");
  t.equal(stopped.state, "error", "still error: the definition is still unreadable");
  t.notOk(stopped.pid, "but its qemu is stopped");
  t.notOk(await isSameProcess(pids["bad-def"]!, await procTicks(pids["bad-def"]!)), "gone (or a zombie of an adopted process)");
});

t.test("SIGTERM: the daemon exits 0 and every VM keeps running", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "term");
  const vm = await d.api.json<VmJson>("POST", "/v1/vms/term/start");
  d.proc.kill("SIGTERM");
  await new Promise((r) => d.proc.once("exit", r));
  t.equal(d.proc.exitCode, 0);
  t.doesNotThrow(() => process.kill(vm.pid!, 0), "qemu still alive");
  await d.restart();
  t.equal((await waitForVm<VmJson>(d, "term", (v) => v.state === "running")).pid, vm.pid);
});
