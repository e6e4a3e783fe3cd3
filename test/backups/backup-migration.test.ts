// A disk's dirty bitmap and backup record go along with a live migration
// (storage copy, backups in a pool both hosts share): after the move, the next
// backup on the destination is incremental on the full one taken on the source,
// and that chain has exactly the disk's content on the destination.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { consoleAfter, startDaemon, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { ensureGuest } from "../helpers/guest.js";
import { shellRun } from "../helpers/guest-shell.js";
import { migrate, sharedGuestPool } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "backup-migration-token-0123456789";
const PORT = 18720;
const VM = "bm";

async function backup(d: TestDaemon, target: string): Promise<{ backupId: string; mode: string; since?: string; fullBecause?: string }> {
  const job = await d.api.json<{ id: string }>("POST", `/v1/vms/${VM}/disks/data/backup`, { target, mode: "incremental" });
  for (let i = 0; i < 600; i++) {
    const j = await d.api.json<{ state: string; result?: { backupId: string; mode: string; since?: string; fullBecause?: string }; error?: unknown }>("GET", `/v1/jobs/${job.id}`);
    if (j.state === "succeeded") return j.result!;
    if (j.state !== "running") throw new Error(`backup ${target} ${j.state}: ${JSON.stringify(j.error)}`);
    await sleep(100);
  }
  throw new Error(`backup ${target} did not end`);
}

async function scribble(d: TestDaemon, atMiB: number, mib: number): Promise<void> {
  const n = Math.floor(Math.random() * 1e9);
  await shellRun(d, VM, `dd if=/dev/urandom of=/dev/vda bs=1M seek=${atMiB} count=${mib} conv=fsync 2>/dev/null && echo S$((${n}+0))`, new RegExp(`S${n}\\b`), 60_000);
}

t.test("the dirty bitmap follows a live migration", { timeout: 280_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const daemon = (ns: string, ip: string) => startDaemon({ netns: ns, args: ["--listen", `${ip}:${PORT}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--insecure-migration"] });
  const a = await daemon(hosts.a.ns, hosts.a.ip);
  const b = await daemon(hosts.b.ns, hosts.b.ip);
  t.teardown(async () => {
    await a.cleanup();
    await b.cleanup();
    hosts.cleanup();
  });
  await a.api.json("POST", "/v1/vms", {
    name: VM,
    memoryMiB: 128,
    boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: `${guest.cmdline} vmh.shell=1` },
    disks: [{ name: "data", sizeGiB: 0.125 }],
  });
  await a.api.json("POST", `/v1/vms/${VM}/start`);
  await consoleAfter(a, VM, 0, /vmh# /, 60_000);
  await shellRun(a, VM, "echo P$((1+1))", /P2/, 60_000);
  await scribble(a, 0, 16);
  const full = await backup(a, "bm-full.qcow2");
  t.equal(full.mode, "full");
  await scribble(a, 32, 2);

  const job = await migrate(a, VM, { destination: `http://${hosts.b.ip}:${PORT}`, storage: "copy" });
  t.equal(job.state, "succeeded", `migration ${job.state}: ${job.error?.detail ?? ""}`);
  await waitForVm(b, VM, (v: { state: string }) => v.state === "running");

  await scribble(b, 48, 1);
  const inc = await backup(b, "bm-inc.qcow2");
  t.equal(inc.mode, "incremental", `the first backup on the destination is incremental (${inc.fullBecause ?? ""})`);
  t.equal(inc.since, full.backupId, "on the full backup taken on the source");
  await b.api.json("POST", `/v1/vms/${VM}/pause`);
  const same = execFileSync("qemu-img", ["compare", "-U", "-f", "qcow2", "-F", "qcow2", path.join(shared, "bm-inc.qcow2"), path.join(b.stateDir, "vms", VM, "disks/data.qcow2")], { encoding: "utf8" });
  await b.api.json("POST", `/v1/vms/${VM}/resume`);
  t.match(same, /Images are identical/, "the chain made on two hosts is the disk byte for byte");
  await b.api.json("POST", `/v1/vms/${VM}/stop`);
});
