// Live migration between two hosts: two daemons in two network namespaces joined
// by a veth pair. The guest keeps running (same boot, counter going on), its disk
// arrives intact, and whatever goes wrong it runs on exactly one host.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t, { type Test } from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import type { JobView } from "../../src/jobs/job-registry.js";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { consoleFromDisk, startDaemon, vmctlJs, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { checkHeldEvents } from "../helpers/event-check.js";
import { ensureGuest } from "../helpers/guest.js";
import { migrate, sharedGuestPool, waitJob } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "migration-test-token-0123456789";
const PORT = 18700;
const PATTERN = "0x5a";

t.test("live migration", { timeout: 280_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const daemon = (ns: string, ip: string, port: number, ...extra: string[]) =>
    startDaemon({ netns: ns, args: ["--listen", `${ip}:${port}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--insecure-migration", ...extra] });
  const a = await daemon(hosts.a.ns, hosts.a.ip, PORT);
  const b = await daemon(hosts.b.ns, hosts.b.ip, PORT);
  t.teardown(async () => {
    await a.cleanup();
    await b.cleanup();
    hosts.cleanup();
  });
  const urlB = `http://${hosts.b.ip}:${PORT}`;

  const define = async (name: string, disk: Record<string, unknown>, memoryMiB = 128) => {
    await a.api.json("POST", "/v1/vms", {
      name,
      memoryMiB,
      boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline },
      disks: [disk],
    });
  };

  t.test("storage shared: the guest moves, same boot, disk intact, nothing left behind", async (t) => {
    const image = path.join(shared, "shared-root.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", image, "256M"]);
    writePattern(image);
    await define("mover", { name: "root", image: "shared-root.qcow2" });
    await a.api.json("POST", "/v1/vms/mover/start");
    const before = await waitForBoot(a, "mover", 1);
    // Through vmctl, as an operator would: progress on stderr, the figures on stdout.
    const out = execFileSync(process.execPath, [vmctlJs, "--socket", a.socket, "migrate", "mover", urlB, "--storage", "shared", "--max-downtime", "300"], {
      encoding: "utf8",
      timeout: 120_000,
    });
    t.match(out, /mover: migrated to .* in \d+ ms \(downtime \d+ ms\)/, "vmctl prints the final figures");
    const job = (await a.api.json<{ jobs: JobView[] }>("GET", "/v1/jobs")).jobs.find((j) => j.vm === "mover")!;
    t.equal(job.state, "succeeded", `job ${job.state}: ${job.error?.detail ?? ""}`);
    t.ok(Number(job.result?.totalTimeMs) > 0 && job.result?.downtimeMs !== undefined, "total time and downtime are reported");
    await assertMovedAndTicking(t, a, b, "mover", before.bootId!);
    await b.api.json("POST", "/v1/vms/mover/stop");
    t.ok(patternIntact(image), "the disk content is intact");
  });

  t.test("storage copy: every disk is copied to the destination", async (t) => {
    await define("copier", { name: "data", sizeGiB: 1 });
    writePattern(path.join(a.stateDir, "vms/copier/disks/data.qcow2"));
    await a.api.json("POST", "/v1/vms/copier/start");
    const before = await waitForBoot(a, "copier", 1);
    const job = await migrate(a, "copier", { destination: urlB, storage: "copy" });
    t.equal(job.state, "succeeded", `job ${job.state}: ${job.error?.detail ?? ""}`);
    t.equal(job.progress.diskBytesCopied, 1024 ** 3, "the whole disk was mirrored");
    await assertMovedAndTicking(t, a, b, "copier", before.bootId!);
    await b.api.json("POST", "/v1/vms/copier/stop");
    t.ok(patternIntact(path.join(b.stateDir, "vms/copier/disks/data.qcow2")), "the copied disk holds what was written");
  });

  // One guest lives through every failure on host A.
  await define("stayer", { name: "data", sizeGiB: 1 });
  await a.api.json("POST", "/v1/vms/stayer/start");
  const stayerBoot = (await waitForBoot(a, "stayer", 1)).bootId!;
  const stillHere = async (t: Test, what: string) => {
    const vm = await waitForVm<VmJson>(a, "stayer", (v) => v.state === "running" && !v.operation, 60_000);
    t.ok(vm.pid, `${what}: still running on the source`);
    t.equal((await consoleFromDisk(a, "stayer")).bootId, stayerBoot, `${what}: same boot id`);
    await waitUntil(async () => (await b.api.request("GET", "/v1/vms/stayer")).status === 404, 40_000);
    t.equal((await b.api.request("GET", "/v1/vms/stayer")).status, 404, `${what}: the destination has nothing left`);
    t.same((await findQemuProcesses(b.runDir)).filter((p) => p.name === "stayer"), [], `${what}: no qemu on the destination`);
  };

  t.test("cancel mid-way", async (t) => {
    const job = await a.api.json<JobView>("POST", "/v1/vms/stayer/migrate", { destination: urlB, storage: "copy", bandwidthMiBps: 1 });
    await waitJob(a, job.id, (j) => j.phase === "migrating-ram" || j.phase === "copying-disks");
    await sleep(500);
    t.equal((await a.api.request("POST", `/v1/jobs/${job.id}/cancel`)).status, 202);
    const end = await waitJob(a, job.id, (j) => j.state !== "running");
    t.equal(end.state, "cancelled");
    await stillHere(t, "cancel");
    // Both daemons' events so far, from two migrations out and in and this cancelled one.
    await checkHeldEvents(t, a, ["migration.started", "vm.migrated-away", "job.progress", "job.ended"]);
    await checkHeldEvents(t, b, ["migration.incoming", "migration.committed", "migration.aborted"]);
  });

  t.test("the link is cut mid-migration", async (t) => {
    const job = await a.api.json<JobView>("POST", "/v1/vms/stayer/migrate", { destination: urlB, storage: "copy", bandwidthMiBps: 1 });
    await waitJob(a, job.id, (j) => j.phase === "migrating-ram");
    await sleep(1000);
    hosts.linkDown();
    const end = await waitJob(a, job.id, (j) => j.state !== "running", 60_000);
    t.equal(end.state, "failed");
    t.match(end.error?.detail, /no progress|failed|unreachable/, `says why: ${end.error?.detail}`);
    hosts.linkUp();
    await stillHere(t, "link cut");
  });

  t.test("the destination daemon is SIGKILLed mid-migration", async (t) => {
    const job = await a.api.json<JobView>("POST", "/v1/vms/stayer/migrate", { destination: urlB, storage: "copy", bandwidthMiBps: 16 });
    await waitJob(a, job.id, (j) => j.phase === "migrating-ram");
    await b.kill();
    await sleep(3000);
    await b.restart();
    const end = await waitJob(a, job.id, (j) => j.state !== "running", 90_000);
    t.equal(end.state, "failed", `ended ${end.state} in ${end.phase}: ${end.error?.detail}`);
    await stillHere(t, "destination killed");
  });

  t.test("the source daemon is SIGKILLed mid-migration", async (t) => {
    const job = await a.api.json<JobView>("POST", "/v1/vms/stayer/migrate", { destination: urlB, storage: "copy", bandwidthMiBps: 1 });
    await waitJob(a, job.id, (j) => j.phase === "migrating-ram");
    await a.kill();
    await sleep(1000);
    await a.restart();
    // The restarted source finds the unfinished RAM transfer in its journal: it cancels it and rolls back.
    await stillHere(t, "source killed");
  });

  t.test("destinations that refuse", async (t) => {
    const wrongToken = await startDaemon({ netns: hosts.b.ns, args: ["--listen", `${hosts.b.ip}:${PORT + 1}`, "--peer-token", "some-other-token-abcdefgh"] });
    const full = await daemon(hosts.b.ns, hosts.b.ip, PORT + 2, "--host-reserved-mib", "100000000");
    t.teardown(async () => {
      await wrongToken.cleanup();
      await full.cleanup();
    });
    await b.api.json("POST", "/v1/vms", { name: "stayer", memoryMiB: 64 });
    const cases: [string, string, RegExp][] = [
      ["bad token", `http://${hosts.b.ip}:${PORT + 1}`, /HTTP 401/],
      ["name clash", urlB, /HTTP 409.*VMH_ERR_VM_EXISTS/],
      ["not enough memory", `http://${hosts.b.ip}:${PORT + 2}`, /HTTP 507.*VMH_ERR_INSUFFICIENT_RESOURCES/],
    ];
    for (const [what, destination, why] of cases) {
      const job = await a.api.json<JobView>("POST", "/v1/vms/stayer/migrate", { destination, storage: "copy" });
      const end = await waitJob(a, job.id, (j) => j.state !== "running");
      t.equal(end.state, "failed", `${what}: refused`);
      t.match(end.error?.detail, why, `${what}: ${end.error?.detail}`);
      const vm = await waitForVm<VmJson>(a, "stayer", (v) => v.state === "running" && !v.operation);
      t.equal((await consoleFromDisk(a, "stayer")).bootId, stayerBoot, `${what}: the guest runs on, same boot`);
      t.ok(vm.pid);
    }
    await b.api.request("DELETE", "/v1/vms/stayer");
    const noToken = fetchStatusFrom(hosts.a.ns, `${urlB}/v1/vms`);
    t.equal(noToken, 401, "TCP without a token is refused");
  });
});


async function assertMovedAndTicking(t: Test, a: TestDaemon, b: TestDaemon, name: string, bootId: string): Promise<void> {
  t.equal((await a.api.request("GET", `/v1/vms/${name}`)).status, 404, "the source has no definition left");
  t.same((await findQemuProcesses(a.runDir)).filter((p) => p.name === name), [], "the source has no qemu left");
  const vm = await b.api.json<VmJson>("GET", `/v1/vms/${name}`);
  t.equal(vm.state, "running", "it runs on the destination");
  // The destination's console log starts mid-boot: read the counter straight from it.
  const lastTick = async (): Promise<number> => {
    const text = (await b.api.request("GET", `/v1/vms/${name}/console/log`)).body.toString();
    return Number([...text.matchAll(/VMH-TICK (\d+) /g)].at(-1)?.[1] ?? 0);
  };
  const first = await lastTick();
  await waitUntil(async () => (await lastTick()) > first + 1, 20_000);
  t.ok((await lastTick()) > first + 1, `its counter goes on (${first} → ${await lastTick()})`);
  const text = (await b.api.request("GET", `/v1/vms/${name}/console/log`)).body.toString();
  t.match(text, new RegExp(`VMH-TICK \\d+ boot_id=${bootId}`), "with the same boot id: it never rebooted");
}

function writePattern(image: string): void {
  execFileSync("qemu-io", ["-f", "qcow2", "-c", `write -P ${PATTERN} 8M 1M`, image], { stdio: "ignore" });
}

function patternIntact(image: string): boolean {
  const out = execFileSync("qemu-io", ["-r", "-U", "-f", "qcow2", "-c", `read -P ${PATTERN} 8M 1M`, image], { encoding: "utf8" });
  return out.includes("read 1048576/1048576") && !out.includes("Pattern verification failed");
}

async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until && !(await cond())) await sleep(200);
}

/** The HTTP status a plain request gets from inside a test namespace. */
function fetchStatusFrom(ns: string, url: string): number {
  const script = `require("http").get(${JSON.stringify(url)}, (r) => { console.log(r.statusCode); r.resume(); }).on("error", () => console.log(0))`;
  return Number(execFileSync("ip", ["netns", "exec", ns, process.execPath, "-e", script], { encoding: "utf8" }).trim());
}
