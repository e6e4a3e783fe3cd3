// A disk's dirty bitmap and backup record go along with a live migration
// (storage copy, backups in a pool both hosts share): after the move, the next
// backup on the destination is incremental on the full one taken on the source,
// and that chain has exactly the disk's content on the destination.
import { execFileSync } from "node:child_process";
import path from "node:path";
import t from "tap";
import { consoleAfter, startDaemon, waitForVm } from "../helpers/daemon.js";
import { ensureGuest } from "../helpers/guest.js";
import { backupData, scribble } from "../helpers/disk-backups.js";
import { shellRun } from "../helpers/guest-shell.js";
import { migrate, sharedGuestPool } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "backup-migration-token-0123456789";
const PORT = 18720;
const VM = "bm";

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
  await scribble(a, VM, 0, 16);
  const full = await backupData(a, VM, "bm-full.qcow2", { mode: "incremental" });
  t.equal(full.mode, "full");
  await scribble(a, VM, 32, 2);

  const job = await migrate(a, VM, { destination: `http://${hosts.b.ip}:${PORT}`, storage: "copy" });
  t.equal(job.state, "succeeded", `migration ${job.state}: ${job.error?.detail ?? ""}`);
  await waitForVm(b, VM, (v: { state: string }) => v.state === "running");

  await scribble(b, VM, 48, 1);
  const inc = await backupData(b, VM, "bm-inc.qcow2", { mode: "incremental" });
  t.equal(inc.mode, "incremental", `the first backup on the destination is incremental (${inc.fullBecause ?? ""})`);
  t.equal(inc.since, full.backupId, "on the full backup taken on the source");
  await b.api.json("POST", `/v1/vms/${VM}/pause`);
  const same = execFileSync("qemu-img", ["compare", "-U", "-f", "qcow2", "-F", "qcow2", path.join(shared, "bm-inc.qcow2"), path.join(b.stateDir, "vms", VM, "disks/data.qcow2")], { encoding: "utf8" });
  await b.api.json("POST", `/v1/vms/${VM}/resume`);
  t.match(same, /Images are identical/, "the chain made on two hosts is the disk byte for byte");
  await b.api.json("POST", `/v1/vms/${VM}/stop`);
});
