// Fleet mode and live migration: the owner key moves with the guest, in one
// compare-and-swap at switch-over; a cancelled migration leaves it with the source.
// Two daemons in two network namespaces; etcd runs in host B's namespace, so
// host A reaches it over the veth link like a remote member.
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { JobView } from "../../src/jobs/job-registry.js";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";
import { startEtcd } from "../helpers/etcd.js";
import { ensureGuest } from "../helpers/guest.js";
import { migrate, sharedGuestPool, waitJob } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "fleet-migration-token-0123456789";
const PORT = 18710;

interface VmBody {
  state: string;
  pid?: number;
  operation?: unknown;
  owner?: { host: string; revision: string; ha: boolean };
}

t.test("migration hands the owner key over", { timeout: 280_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  t.teardown(async () => {
    hosts.cleanup();
  });
  const etcd = await startEtcd({ host: hosts.b.ip, netns: hosts.b.ns });
  t.teardown(() => etcd.cleanup());
  const guest = await ensureGuest();
  const daemon = (id: string, ns: string, ip: string) =>
    startDaemon({
      netns: ns,
      args: ["--listen", `${ip}:${PORT}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--etcd", etcd.url, "--host-id", id, "--lease-ttl", "5", "--insecure-migration"],
    });
  const a = await daemon("host-a", hosts.a.ns, hosts.a.ip);
  t.teardown(() => a.cleanup());
  const b = await daemon("host-b", hosts.b.ns, hosts.b.ip);
  t.teardown(() => b.cleanup());
  const urlB = `http://${hosts.b.ip}:${PORT}`;
  const define = (name: string, extra: Record<string, unknown> = {}) =>
    a.api.json("POST", "/v1/vms", { name, memoryMiB: 128, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline }, ...extra });

  for (const ha of [false, true]) {
    const name = ha ? "mover-ha" : "mover";
    await define(name, { ha });
    const started = await a.api.json<VmBody>("POST", `/v1/vms/${name}/start?wait=true`);
    t.equal(started.owner?.host, "host-a", `${name}: host-a owns it`);
    t.equal(started.owner?.ha, ha);
    const before = await waitForBoot(a, name, 1, 120_000);
    const job = await migrate(a, name, { destination: urlB, storage: "shared" });
    t.equal(job.state, "succeeded", `${name}: job ${job.state}: ${job.error?.detail ?? ""}`);
    const moved = await b.api.json<VmBody>("GET", `/v1/vms/${name}`);
    t.equal(moved.state, "running", `${name}: runs on host-b`);
    t.equal(moved.owner?.host, "host-b", `${name}: the owner key moved to host-b`);
    t.ok(BigInt(moved.owner!.revision) > BigInt(started.owner!.revision), `${name}: with a newer revision (${started.owner!.revision} → ${moved.owner!.revision})`);
    t.equal(moved.owner?.ha, ha);
    t.same((await findQemuProcesses(a.runDir)).filter((p) => p.name === name), [], `${name}: no qemu left on host-a`);
    // The destination's console log starts mid-boot: wait for the guest's next tick there.
    let text = "";
    for (let i = 0; i < 200 && !text.includes(`boot_id=${before.bootId}`); i++) {
      text = (await b.api.request("GET", `/v1/vms/${name}/console/log`)).body.toString();
      await sleep(100);
    }
    t.match(text, new RegExp(`boot_id=${before.bootId}`), `${name}: same boot`);
    // host-a may not start it now: the key names host-b.
    await define(name, { ha });
    const refused = await a.api.request("POST", `/v1/vms/${name}/start?wait=true`);
    const body = JSON.parse(refused.body.toString()) as { code?: string; owner?: string };
    t.equal(refused.status, 409, `${name}: host-a's start is refused`);
    t.equal(body.owner, "host-b");
    await a.api.json("DELETE", `/v1/vms/${name}`);
    await b.api.json("POST", `/v1/vms/${name}/stop?wait=true`);
  }

  // A cancelled migration leaves the key with the source.
  await define("stayer", { disks: [{ name: "data", sizeGiB: 1 }] });
  const stayer = await a.api.json<VmBody>("POST", "/v1/vms/stayer/start?wait=true");
  await waitForBoot(a, "stayer", 1, 120_000);
  const job = await a.api.json<JobView>("POST", "/v1/vms/stayer/migrate", { destination: urlB, storage: "copy", bandwidthMiBps: 1 });
  await waitJob(a, job.id, (j) => j.phase === "migrating-ram" || j.phase === "copying-disks");
  await sleep(500);
  t.equal((await a.api.request("POST", `/v1/jobs/${job.id}/cancel`)).status, 202);
  const end = await waitJob(a, job.id, (j) => j.state !== "running", 60_000);
  t.equal(end.state, "cancelled");
  const still = await waitForVm<VmBody>(a, "stayer", (v) => v.state === "running" && !v.operation, 60_000);
  t.equal(still.owner?.host, "host-a", "after the cancel the key stays with host-a");
  t.equal(still.owner?.revision, stayer.owner?.revision, "untouched");
  t.equal(still.pid, stayer.pid, "and the guest runs there");
  await a.api.json("POST", "/v1/vms/stayer/stop?wait=true");
});

