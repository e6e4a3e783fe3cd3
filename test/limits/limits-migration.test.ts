// Limits across a live migration: the destination builds its qemu from the
// definition, so it holds the VM's limits (its own cgroup, the throttle group)
// before the guest runs there, and the source's cgroup goes with its qemu.
import { readFile } from "node:fs/promises";
import t from "tap";
import { startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";
import { ensureGuest } from "../helpers/guest.js";
import { allStarted, migrate, sharedGuestPool } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "limits-migration-token-0123456789";
const PORT = 18760;
const MiB = 1024 * 1024;

interface VmJson {
  pid?: number;
  state: string;
  limits?: unknown;
}

async function v1Dir(pid: number, controller: string): Promise<string> {
  const line = (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n").find((l) => l.split(":")[1]?.split(",").includes(controller));
  return `/sys/fs/cgroup/${controller}${line!.split(":")[2]}`;
}

t.test("a migrated VM holds its limits on the destination", { timeout: 180_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const daemon = (ns: string, ip: string) =>
    startDaemon({ netns: ns, netnsKeepSys: true, args: ["--listen", `${ip}:${PORT}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--insecure-migration"] });
  const [a, b] = await allStarted([daemon(hosts.a.ns, hosts.a.ip), daemon(hosts.b.ns, hosts.b.ip)]);
  t.teardown(async () => {
    await a.cleanup();
    await b.cleanup();
    hosts.cleanup();
  });
  const limits = { cpu: { maxPercent: 80, weight: 300 }, memory: { hardMiB: 1024 }, disk: { readBps: 8 * MiB, writeIops: 300 }, pids: 400 };
  await a.api.json("POST", "/v1/vms", {
    name: "mover",
    memoryMiB: 128,
    boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline },
    limits,
  });
  await a.api.json("POST", "/v1/vms/mover/start");
  await waitForBoot(a, "mover", 1);
  const src = await waitForVm<VmJson>(a, "mover", (v) => v.pid !== undefined);
  const srcMem = await v1Dir(src.pid!, "memory");

  const job = await migrate(a, "mover", { destination: `http://${hosts.b.ip}:${PORT}`, storage: "shared" });
  t.equal(job.state, "succeeded", `job ${job.state}: ${job.error?.detail ?? ""}`);
  const moved = await waitForVm<VmJson>(b, "mover", (v) => v.state === "running" && v.limits !== undefined, 30_000);
  t.same(moved.limits, limits, "the destination's qemu holds the definition's limits, read back from its cgroup and qemu");
  const dstCpu = await v1Dir(moved.pid!, "cpu");
  t.match(dstCpu, /\/vmhostd\/mover-[0-9a-f]{8}$/, "in a cgroup of its own on the destination");
  t.not(await v1Dir(moved.pid!, "memory"), srcMem, "not the source's");
  t.equal((await readFile(`${dstCpu}/cpu.cfs_quota_us`, "utf8")).trim(), "80000");
  await t.rejects(readFile(`${srcMem}/memory.limit_in_bytes`, "utf8"), "the source's cgroup went with its qemu");
  await b.api.json("POST", "/v1/vms/mover/stop?wait=true");
});
