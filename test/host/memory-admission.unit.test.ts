// Memory admission's arithmetic and its claims, with the host's figures given:
// what fits, what a running guest has not touched yet, and two starts at once.
import t from "tap";
import { admissibleMiB, fits, MemoryAdmission, untouchedMiB } from "../../src/host/memory-admission.js";
import { InsufficientMemory } from "../../src/errors.js";

t.test("arithmetic", async (t) => {
  t.equal(admissibleMiB({ memAvailableMiB: 4096, reserveMiB: 512, promisedMiB: 1024 }), 2560);
  t.equal(admissibleMiB({ memAvailableMiB: 400, reserveMiB: 512, promisedMiB: 0 }), 0, "never negative");
  t.ok(fits({ memoryMiB: 2560, memAvailableMiB: 4096, reserveMiB: 512, promisedMiB: 1024 }), "exactly what is left fits");
  t.notOk(fits({ memoryMiB: 2561, memAvailableMiB: 4096, reserveMiB: 512, promisedMiB: 1024 }), "one MiB more does not");
  t.equal(untouchedMiB(1024, 300), 724);
  t.equal(untouchedMiB(128, 180), 0, "qemu's own memory beyond the guest's promises nothing");
});

t.test("claims: concurrent starts, running guests, release", async (t) => {
  let running: { name: string; memoryMiB: number; pid: number }[] = [];
  const resident = new Map<number, number>();
  let memAvailable = 3000;
  const admission = new MemoryAdmission(
    500,
    () => running,
    async () => memAvailable,
    async (pid) => resident.get(pid) ?? 0,
  );
  // 2500 MiB admissible: two 2000 MiB starts at once must not both pass.
  const results = await Promise.allSettled([admission.admit("a", 2000), admission.admit("b", 2000)]);
  t.equal(results.filter((r) => r.status === "fulfilled").length, 1, "one of two concurrent starts passes");
  const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
  t.ok(refused.reason instanceof InsufficientMemory, "the other is refused");
  t.match(refused.reason, { code: "VMH_ERR_INSUFFICIENT_MEMORY", status: 409, fields: { field: "memoryMiB", neededMiB: 2000, availableMiB: 500, reserveMiB: 500, promisedMiB: 2000 } });
  const release = (results.find((r) => r.status === "fulfilled") as PromiseFulfilledResult<() => void>).value;
  await t.resolves(admission.admit("c", 500), "what is left is still given");

  // The started VM runs, and has touched 1200 of its 2000 MiB; MemAvailable went down by as much.
  release();
  running = [{ name: "a", memoryMiB: 2000, pid: 11 }];
  resident.set(11, 1200);
  memAvailable = 1800;
  const c = admission;
  await t.rejects(c.admit("d", 600), { code: "VMH_ERR_INSUFFICIENT_MEMORY", fields: { promisedMiB: 800 + 500, availableMiB: 0 } }, "its untouched 800 MiB and c's claim stay promised");
  t.equal((await new MemoryAdmission(500, () => running, async () => 1800, async () => 1200).admit("d", 500).then(() => "ok")), "ok", "without c's claim 500 MiB fit");
});

t.test("a start refused leaves no claim behind", async (t) => {
  const admission = new MemoryAdmission(0, () => [], async () => 1000, async () => 0);
  await t.rejects(admission.admit("big", 1001));
  await t.resolves(admission.admit("fits", 1000), "the refused start claimed nothing");
});
