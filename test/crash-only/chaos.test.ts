// Chaos: random lifecycle operations over several VMs while the daemon is
// SIGKILLed at random moments and restarted. After every restart: every defined
// VM is there, no definition is torn, every qemu belongs to exactly one VM, the
// states match qemu, and a guest that was running throughout never rebooted.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { consoleFromDisk, defineGuestVm, startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";

const ROUNDS = Number(process.env.CHAOS_ROUNDS ?? 30);
const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);
let state = seed;
/** A small seeded generator, so a failing run can be replayed with CHAOS_SEED. */
const rand = (n: number): number => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return state % n;
};

const CHAOS_VMS = ["c1", "c2", "c3"];
/** States a VM passes through; the checks wait for them to settle (a stuck one is reported as unsettled). */
const TRANSIENT = ["unknown", "starting", "shutting-down"];
const ACTIONS = ["start", "start", "stop", "shutdown", "pause", "resume", "reset"];

t.test(`${ROUNDS} SIGKILLs of the daemon in the middle of random operations (seed ${seed})`, { timeout: 280_000 }, async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "steady");
  for (const n of CHAOS_VMS) await defineGuestVm(d, n);
  const steady = await d.api.json<VmJson>("POST", "/v1/vms/steady/start");
  const steadyBoot = (await waitForBoot(d, "steady", 1)).bootId;

  for (let round = 1; round <= ROUNDS; round++) {
    const ops: string[] = [];
    for (let i = 0, n = 1 + rand(3); i < n; i++) {
      const r = rand(10);
      if (r < 8) {
        const vm = CHAOS_VMS[rand(CHAOS_VMS.length)]!;
        const action = ACTIONS[rand(ACTIONS.length)]!;
        ops.push(`${action} ${vm}`);
        const body = action === "shutdown" ? { timeoutSec: 3 } : undefined;
        void d.api.request("POST", `/v1/vms/${vm}/${action}`, body).catch(() => {});
      } else if (r === 8) {
        ops.push("create eph");
        void d.api.request("POST", "/v1/vms", { name: "eph", memoryMiB: 64, disks: [{ name: "d", sizeGiB: 1 }] }).catch(() => {});
      } else {
        ops.push("delete eph");
        void d.api.request("DELETE", "/v1/vms/eph").catch(() => {});
      }
    }
    await sleep(rand(900));
    await d.kill();
    await d.restart();
    const problems = await checkInvariants(d, steady.pid!, steadyBoot!);
    t.same(problems, [], `round ${round} (${ops.join(", ")}): invariants hold`);
    if (problems.length) {
      // What the daemon said about the VMs at fault, for whoever reads the failure.
      const names = problems.map((p) => p.split(/[:= ]/)[0]!).filter((n) => n !== "unsettled");
      const lines = d.log().split("\n").filter((l) => /"level":(30|40|50)/.test(l) && names.some((n) => l.includes(`"vm":"${n}"`)));
      t.comment(lines.slice(-40).join("\n"));
      break;
    }
  }
});

async function checkInvariants(d: TestDaemon, steadyPid: number, steadyBoot: string): Promise<string[]> {
  const problems: string[] = [];
  // Let adoption and any carried-on operation finish.
  let vms: VmJson[] = [];
  // A carried-on shutdown may take its remaining time plus a hard stop (quit, SIGTERM, SIGKILL: 5 s each)
  // on a loaded machine: up to a minute before a VM still in flight counts as stuck.
  for (let i = 0; i < 1200; i++) {
    vms = (await d.api.json<{ vms: VmJson[] }>("GET", "/v1/vms")).vms;
    if (vms.every((v) => !TRANSIENT.includes(v.state) && !v.operation)) break;
    await sleep(50);
  }
  const unsettled = vms.filter((v) => TRANSIENT.includes(v.state) || v.operation);
  if (unsettled.length) problems.push(`unsettled: ${unsettled.map((v) => `${v.name}=${v.state}/${v.operation?.name}`).join(" ")}`);

  const dirs = (await readdir(path.join(d.stateDir, "vms"))).filter((n) => !n.startsWith("."));
  for (const dir of dirs) {
    try {
      const def = JSON.parse(await readFile(path.join(d.stateDir, "vms", dir, "definition.json"), "utf8")) as { name: string };
      if (def.name !== dir) problems.push(`${dir}: definition names ${def.name}`);
    } catch (err) {
      problems.push(`${dir}: torn or missing definition: ${(err as Error).message}`);
    }
  }
  const listed = vms.map((v) => v.name).sort();
  if (JSON.stringify(listed) !== JSON.stringify(dirs.sort())) problems.push(`listed ${listed} but on disk ${dirs}`);
  for (const name of ["steady", ...CHAOS_VMS]) if (!listed.includes(name)) problems.push(`${name} is missing`);

  const procs = await findQemuProcesses(d.runDir);
  const byName = new Map<string, number[]>();
  for (const p of procs) byName.set(p.name ?? "?", [...(byName.get(p.name ?? "?") ?? []), p.pid]);
  for (const [name, pids] of byName) {
    if (pids.length > 1) problems.push(`${name} has ${pids.length} qemu processes: ${pids}`);
    const vm = vms.find((v) => v.name === name);
    if (!vm) problems.push(`qemu ${pids} belongs to no VM (${name})`);
    else if (vm.pid !== pids[0]) problems.push(`${name}: API says pid ${vm.pid}, qemu is ${pids}`);
  }
  for (const vm of vms) {
    const alive = byName.has(vm.name);
    if (vm.pid && !alive) problems.push(`${vm.name}: API says pid ${vm.pid} but no such qemu`);
    if (alive && !["running", "paused"].includes(vm.state)) problems.push(`${vm.name}: qemu alive but state ${vm.state}`);
    if (!alive && !["stopped", "crashed"].includes(vm.state)) problems.push(`${vm.name}: no qemu but state ${vm.state}`);
  }

  const s = vms.find((v) => v.name === "steady");
  if (s?.pid !== steadyPid || s.state !== "running") problems.push(`steady: pid ${s?.pid} state ${s?.state}`);
  const m = await consoleFromDisk(d, "steady");
  if (m.bootId !== steadyBoot) problems.push(`steady rebooted: ${steadyBoot} → ${m.bootId}`);
  return problems;
}
