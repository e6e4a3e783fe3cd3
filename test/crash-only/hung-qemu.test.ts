// A qemu that stops answering (SIGSTOP) is shown as unresponsive and its
// commands time out with a clear error, while every other VM and the API carry
// on; a daemon restarted meanwhile adopts the others at once.
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { defineGuestVm, startDaemon, waitForVm } from "../helpers/daemon.js";

t.test("a SIGSTOPped qemu blocks nothing but itself", async (t) => {
  const d = await startDaemon();
  const frozen: number[] = [];
  t.teardown(async () => {
    for (const pid of frozen) process.kill(pid, "SIGCONT");
    await d.cleanup();
  });
  await defineGuestVm(d, "hung");
  await defineGuestVm(d, "fine");
  const hung = await d.api.json<VmJson>("POST", "/v1/vms/hung/start");
  await d.api.json<VmJson>("POST", "/v1/vms/fine/start");
  process.kill(hung.pid!, "SIGSTOP");
  frozen.push(hung.pid!);

  const pausing = timed(d.api.request("POST", "/v1/vms/hung/pause"));
  const other = await timed(d.api.json<VmJson>("POST", "/v1/vms/fine/pause"));
  t.equal(other.value.state, "paused");
  t.ok(other.ms < 1000, `another VM answers promptly while one is hung (${other.ms} ms)`);
  const list = await timed(d.api.json<{ vms: VmJson[] }>("GET", "/v1/vms"));
  t.ok(list.ms < 500, `listing answers promptly (${list.ms} ms)`);

  const refused = await pausing;
  t.equal(refused.value.status, 504, "the hung VM's command times out");
  const problem = JSON.parse(refused.value.body.toString()) as { code: string; detail: string };
  t.equal(problem.code, "VMH_ERR_QEMU_UNRESPONSIVE");
  t.match(problem.detail, /did not answer stop in time/);
  t.ok(refused.ms < 10_000, `within the command's deadline (${refused.ms} ms)`);
  const shown = await timed(d.api.json<VmJson>("GET", "/v1/vms/hung"));
  t.equal(shown.value.unresponsive, true, "shown as unresponsive");
  t.ok(shown.ms < 2000, `GET of the hung VM answers within its short deadline (${shown.ms} ms)`);

  await d.kill();
  const restartStarted = Date.now();
  await d.restart();
  const fine = await waitForVm<VmJson>(d, "fine", (v) => v.state === "paused", 10_000);
  t.ok(Date.now() - restartStarted < 4000, `the others are adopted at once (${Date.now() - restartStarted} ms)`);
  t.equal(fine.state, "paused");
  const h = await d.api.json<VmJson>("GET", "/v1/vms/hung");
  t.ok(h.state === "unknown" || h.unresponsive, `the hung VM is shown as not answering (${h.state})`);

  process.kill(hung.pid!, "SIGCONT");
  frozen.pop();
  const back = await waitForVm<VmJson>(d, "hung", (v) => v.state === "running" && !v.unresponsive, 15_000);
  t.equal(back.pid, hung.pid, "once it answers again, the same qemu is managed as before");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/hung/pause")).state, "paused");
});

async function timed<T>(p: Promise<T>): Promise<{ value: T; ms: number }> {
  const s = Date.now();
  const value = await p;
  return { value, ms: Date.now() - s };
}
