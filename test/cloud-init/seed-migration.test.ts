// A VM with a cloud-init seed migrates: the destination makes the seed again from
// the definition (same content), attaches it in the same place so the device
// layouts match, and the guest runs on without a reboot.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { consoleAfter, startDaemon, waitForBoot } from "../helpers/daemon.js";
import { ensureGuest } from "../helpers/guest.js";
import { sharedGuestPool } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "seed-migration-token-0123456789";
const PORT = 18760;
const VM = "seeded";

/** One file of an ISO image, read with xorriso as cloud-init would find it. */
async function isoFile(iso: string, name: string, dir: string): Promise<string> {
  const out = path.join(dir, `${name}-${randomBytes(3).toString("hex")}`);
  execFileSync("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", `/${name}`, out], { stdio: "ignore" });
  return await readFile(out, "utf8");
}

t.test("a VM's cloud-init seed follows it in a migration", { timeout: 240_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const daemon = (ns: string, ip: string) =>
    startDaemon({ netns: ns, args: ["--listen", `${ip}:${PORT}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--insecure-migration"] });
  const a = await daemon(hosts.a.ns, hosts.a.ip);
  const b = await daemon(hosts.b.ns, hosts.b.ip);
  t.teardown(async () => {
    await a.cleanup();
    await b.cleanup();
    hosts.cleanup();
  });

  const marker = `moved-${randomBytes(4).toString("hex")}`;
  await a.api.json("POST", "/v1/vms", {
    name: VM,
    memoryMiB: 128,
    boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: `${guest.cmdline} vmh.cidata=1` },
    cloudInit: { userData: `#cloud-config\nvmh_marker: ${marker}\n` },
  });
  await a.api.json("POST", `/v1/vms/${VM}/start`);
  t.match(await consoleAfter(a, VM, 0, /VMH-CIDATA vmh_marker: \S+/), marker, "the guest read its seed on the source");
  const before = await waitForBoot(a, VM, 1);
  const seedA = path.join(a.stateDir, "vms", VM, "cidata.iso");
  const digestA = await readFile(`${seedA}.sha256`, "utf8");

  const res = await a.api.request("POST", `/v1/vms/${VM}/migrate`, { destination: `http://${hosts.b.ip}:${PORT}`, storage: "shared" });
  t.equal(res.status, 202, "the migration is accepted");
  const { id } = JSON.parse(res.body.toString()) as { id: string };
  let job: { state: string; error?: { detail?: string } } = { state: "running" };
  for (const until = Date.now() + 150_000; job.state === "running" && Date.now() < until; await sleep(250)) {
    job = await a.api.json("GET", `/v1/jobs/${id}`);
  }
  t.equal(job.state, "succeeded", `the migration succeeded: ${job.error?.detail ?? ""}`);

  const seedB = path.join(b.stateDir, "vms", VM, "cidata.iso");
  t.equal(await readFile(`${seedB}.sha256`, "utf8"), digestA, "the destination made a seed of the same content");
  t.match(await isoFile(seedB, "user-data", shared), `vmh_marker: ${marker}`, "holding the same user-data");
  t.match(await isoFile(seedB, "meta-data", shared), `local-hostname: ${VM}`, "and meta-data");
  const vm = await b.api.json<VmJson>("GET", `/v1/vms/${VM}`);
  t.equal(vm.state, "running", "the VM runs on the destination");
  t.ok(vm.argv?.some((a) => a.includes(seedB) && a.includes('"read-only":true')), "with the seed attached from its own directory");
  const ticking = await consoleAfter(b, VM, 0, new RegExp(`VMH-TICK \\d+ boot_id=${before.bootId}`));
  t.ok(ticking, "and the guest runs on with the same boot id");
  await t.rejects(stat(seedA), "the source's seed went with its copy of the VM");
  await b.api.json("POST", `/v1/vms/${VM}/stop`);
});
