// Memory admission against the real host: a VM that asks for more memory than
// the host has free (less --reserve-memory) is refused with 409 before any qemu
// exists, a normal one starts, and two starts at once cannot both take the same
// free memory.
import { readFile } from "node:fs/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { defineGuestVm, startDaemon } from "../helpers/daemon.js";

async function memAvailableMiB(): Promise<number> {
  const kib = /^MemAvailable:\s+(\d+) kB/m.exec(await readFile("/proc/meminfo", "utf8"))![1]!;
  return Math.floor(Number(kib) / 1024);
}

interface MemoryProblem {
  code: string;
  field: string;
  neededMiB: number;
  availableMiB: number;
  reserveMiB: number;
}

t.test("memory admission at start", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const qemus = async (): Promise<number> => (await findQemuProcesses(d.runDir)).length;

  const huge = (await memAvailableMiB()) + 4096;
  await defineGuestVm(d, "huge", { memoryMiB: huge });
  const r = await d.api.request("POST", "/v1/vms/huge/start");
  t.equal(r.status, 409, "a VM larger than the free memory is refused");
  const p = JSON.parse(r.body.toString()) as MemoryProblem;
  t.match(p, { code: "VMH_ERR_INSUFFICIENT_MEMORY", field: "memoryMiB", neededMiB: huge, reserveMiB: 512 });
  t.ok(p.availableMiB < huge, `the problem says what is available (${p.availableMiB} MiB)`);
  t.equal(await qemus(), 0, "no qemu was spawned");
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/huge")).state, "stopped");

  await defineGuestVm(d, "normal", { memoryMiB: 128 });
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/normal/start")).state, "running", "a normal VM starts");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/normal/stop")).state, "stopped");

  // Kept for the host: a little more than is free now. (Other processes on the host may free
  // memory meanwhile: 256 MiB of margin, so the refusal does not depend on their quiet.)
  await d.kill();
  await d.restart(["--reserve-memory", String((await memAvailableMiB()) + 256)]);
  const small = await d.api.request("POST", "/v1/vms/normal/start");
  t.equal(small.status, 409, "with --reserve-memory at MemAvailable a 128 MiB VM is refused");
  t.match(JSON.parse(small.body.toString()), { code: "VMH_ERR_INSUFFICIENT_MEMORY", neededMiB: 128 });
  t.equal(await qemus(), 0, "no qemu was spawned");

  // About 3000 MiB to give: each of two 2000 MiB starts fits alone, not both.
  await d.kill();
  await d.restart(["--reserve-memory", String((await memAvailableMiB()) - 3000)]);
  await defineGuestVm(d, "twin-a", { memoryMiB: 2000 });
  await defineGuestVm(d, "twin-b", { memoryMiB: 2000 });
  const both = await Promise.all(["twin-a", "twin-b"].map((vm) => d.api.request("POST", `/v1/vms/${vm}/start`)));
  t.same(both.map((x) => x.status).sort(), [200, 409], "of two concurrent starts one passes, one is refused");
  const loser = JSON.parse(both.find((x) => x.status === 409)!.body.toString()) as MemoryProblem & { promisedMiB: number };
  t.ok(loser.promisedMiB >= 2000, `the refusal counts the other start's claim (${loser.promisedMiB} MiB promised)`);
  t.equal(await qemus(), 1, "one qemu runs");
  const winner = both[0]!.status === 200 ? "twin-a" : "twin-b";
  t.equal((await d.api.json<VmJson>("POST", `/v1/vms/${winner}/stop`)).state, "stopped");
});
