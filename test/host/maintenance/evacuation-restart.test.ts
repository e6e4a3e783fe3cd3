// Host maintenance without fleet mode, and across a crash of the daemon. The
// destinations must be named (`to`, their API URLs): without them the request is a
// 400 naming `to`. Host A evacuates three guests to B one at a time; A's daemon is
// SIGKILLed while the second migrates. The restarted daemon refuses starts at once
// (the flag is on disk), lets the journal's recovery settle the cut-short migration,
// and carries the same job on: every guest ends on B in its first boot, none on A.
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { JobView } from "../../../src/jobs/job-registry.js";
import type { EvacuationItem } from "../../../src/host/maintenance/evacuation-plan.js";
import { findQemuProcesses } from "../../../src/qemu/qemu-process.js";
import { problem, startDaemon, waitForBoot, type TestDaemon } from "../../helpers/daemon.js";
import { ensureGuest } from "../../helpers/guest.js";
import { allStarted, sharedGuestPool, waitJob } from "../../helpers/migration.js";

const TOKEN = "evacuation-restart-token-0123456789";
/** Below the ephemeral range, so no outgoing connection can take A's port while it restarts. */
const PORT = 18775;
const VMS = ["vm1", "vm2", "vm3"];

/** The evacuation job's line per VM. */
const itemsOf = (j: JobView): EvacuationItem[] => (j.items ?? []) as unknown as EvacuationItem[];

async function sameBootThere(d: TestDaemon, vm: string, bootId: string): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const text = (await d.api.request("GET", `/v1/vms/${vm}/console/log`)).body.toString();
    if (new RegExp(`^VMH-TICK \\d+ boot_id=${bootId}\\r?$`, "m").test(text)) return true;
    await sleep(200);
  }
  return false;
}

t.test("a daemon killed during an evacuation carries it on after its restart", { timeout: 240_000 }, async (t) => {
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const [portA, portB] = [PORT, PORT + 1];
  const daemon = async (port: number) => {
    const d = await startDaemon({ args: ["--listen", `127.0.0.1:${port}`, "--pool", `images=${shared}`, "--peer-token", TOKEN] });
    t.teardown(() => d.cleanup());
    return d;
  };
  const [a, b] = await allStarted([daemon(portA), daemon(portB)]);
  const urlB = `http://127.0.0.1:${portB}`;

  const noTo = await a.api.request("POST", "/v1/host/evacuate", {});
  const body = JSON.parse(noTo.body.toString()) as { code?: string; field?: string };
  t.equal(noTo.status, 400, "without fleet mode the destinations are required");
  t.equal(body.code, "VMH_ERR_VALIDATION");
  t.equal(body.field, "to", "the problem names the field");
  t.equal((await a.api.json<{ maintenance: boolean }>("GET", "/v1/host")).maintenance, false, "and the host did not enter maintenance");

  for (const name of VMS) {
    await a.api.json("POST", "/v1/vms", { name, memoryMiB: 128, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline } });
    await a.api.json("POST", `/v1/vms/${name}/start?wait=true`);
  }
  // Defined, not running: it stays, and shows that starts are refused.
  await a.api.json("POST", "/v1/vms", { name: "late", memoryMiB: 128, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline } });
  const boots = Object.fromEntries(await Promise.all(VMS.map(async (n) => [n, (await waitForBoot(a, n, 1, 120_000)).bootId!] as const)));

  // One at a time and slowed down, so the kill lands in the middle of a migration.
  const started = await a.api.json<JobView>("POST", "/v1/host/evacuate", { to: [urlB], parallel: 1, bandwidthMiBps: 24 });
  t.same(itemsOf(started).map((i) => i.destination), [urlB, urlB, urlB], "all planned for B");
  const mid = await waitJob(a, started.id, (j) => {
    const items = itemsOf(j);
    return items.filter((i) => i.state === "done").length === 1 && items.some((i) => i.state === "migrating" && i.job !== undefined);
  }, 120_000);
  t.ok(itemsOf(mid).filter((i) => i.state === "migrating").length <= 1, "never more than `parallel` at once");
  const moving = itemsOf(mid).find((i) => i.state === "migrating")!;
  // The kill lands while its RAM is on the way: the journal's recovery must settle it.
  await waitJob(a, moving.job!, (j) => j.phase === "migrating-ram", 30_000);
  await a.kill();
  await a.restart();

  t.same(await problem(a, "POST", "/v1/vms/late/start"), { status: 409, code: "VMH_ERR_HOST_IN_MAINTENANCE" }, "after the restart starts are refused at once");
  const end = await waitJob(a, started.id, (j) => j.state !== "running", 180_000);
  t.equal(end.state, "succeeded", `the same job carried on to the end: ${JSON.stringify(end.error ?? end.items)}`);
  t.same(itemsOf(end).map((i) => i.state), ["done", "done", "done"]);
  t.comment(`evacuation of 3 VMs, parallel 1, 24 MiB/s, across a restart: ${String(end.result?.durationMs)} ms after the restart`);

  for (const name of VMS) {
    const vm = await b.api.json<{ state: string }>("GET", `/v1/vms/${name}`);
    t.equal(vm.state, "running", `${name} runs on B`);
    t.ok(await sameBootThere(b, name, boots[name]!), `${name}: in its first boot`);
  }
  t.same((await findQemuProcesses(a.runDir)).map((p) => p.name), [], "no qemu left on A");
  t.same((await a.api.json<{ vms: { name: string }[] }>("GET", "/v1/vms")).vms.map((v) => v.name), ["late"], "and none of them defined there");
  const host = await a.api.json<{ maintenance: boolean; evacuation?: { state: string } }>("GET", "/v1/host");
  t.equal(host.maintenance, true, "still in maintenance until resumed");
  t.equal(host.evacuation?.state, "succeeded");
  await a.api.json("POST", "/v1/host/resume", {});
  for (const name of VMS) await b.api.json("POST", `/v1/vms/${name}/stop?wait=true`);
});
