// A VM's snapshots go along with a live migration with storage copy: two daemons
// in two network namespaces speaking mutual TLS (the layers go over the peer API,
// with its token and client certificate), the guest writing sectors it then
// reads back. Written A, snapshot s1, written B, snapshot s2 with memory, a full
// backup, more writes; a migration
// cancelled on purpose (in its RAM phase, with every layer already copied) leaves
// no file of the VM on the destination and the source as it was; then the
// migration: the guest reads B there, both are listed, the memory state arrived
// byte for byte, the first backup there is incremental (the bitmap found its
// node, though the top is named otherwise on the source), a revert to s2 there
// resumes the guest from its memory, and a revert to s1 there gives A back and
// not B; s1 is then deleted there. A hostile peer's
// layer uploads (a name out of the VM's directory, a body not matching its
// sha256) are refused and leave nothing behind.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import t from "tap";
import type { JobView } from "../../src/jobs/job-registry.js";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { consoleAfter, startDaemon, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { ensureGuest } from "../helpers/guest.js";
import { backupData } from "../helpers/disk-backups.js";
import { readSector, shellRun, writeSector } from "../helpers/guest-shell.js";
import { allStarted, migrate, sharedGuestPool, waitJob } from "../helpers/migration.js";
import { makeCertDir } from "../helpers/tls-certs.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TOKEN = "snapshot-migration-token-0123456789";
const PORT = 18780;
const VM = "sm";
const MIGRATION_ID = "0b0e9a3c-6c1f-4c55-9a59-2f0d3f3b7a10";

/** Every file under `dir` (recursively), relative to it; none when it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/** A raw PUT of `body` over the daemon's Unix socket, as a peer would send a layer. */
function putLayer(d: TestDaemon, rel: string, body: Buffer, sha256: string): Promise<{ status: number; code?: string }> {
  const query = new URLSearchParams({ migration: MIGRATION_ID, size: String(body.length), sha256 });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: d.socket, method: "PUT", path: `/v1/incoming/${VM}/layers/${rel}?${query}`, headers: { "content-type": "application/octet-stream", "content-length": body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, code: text ? (JSON.parse(text) as { code?: string }).code : undefined });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

t.test("snapshots go along with a storage-copy migration", { timeout: 240_000 }, async (t) => {
  const hosts = makeTwoHosts();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const certs = await makeCertDir();
  const ca = await certs.ca("snapmig-ca");
  const [certA, certB] = await Promise.all([ca.issue("host-a", { ips: [hosts.a.ip] }), ca.issue("host-b", { ips: [hosts.b.ip] })]);
  const daemon = (ns: string, ip: string, c: { cert: string; key: string }) =>
    startDaemon({ netns: ns, args: ["--listen", `${ip}:${PORT}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--tls-cert", c.cert, "--tls-key", c.key, "--tls-ca", ca.cert] });
  const [a, b] = await allStarted([daemon(hosts.a.ns, hosts.a.ip, certA), daemon(hosts.b.ns, hosts.b.ip, certB)]);
  t.teardown(async () => {
    await a.cleanup();
    await b.cleanup();
    hosts.cleanup();
    await certs.cleanup();
  });
  const urlB = `https://${hosts.b.ip}:${PORT}`;
  const vmDirB = path.join(b.stateDir, "vms", VM);
  const leftOnB = async () => [...(await filesUnder(vmDirB)), ...(await filesUnder(path.join(b.stateDir, "incoming-layers")))];

  t.test("a hostile peer's layers are refused and leave nothing", async (t) => {
    const body = Buffer.from("not a layer");
    const sha = createHash("sha256").update(body).digest("hex");
    for (const rel of ["snapshots/..", "snapshots/.data.1.qcow2", "disks/data.raw", "etc/data.1.qcow2", "snapshots/..%2F..%2Fescape.qcow2"]) {
      const r = await putLayer(b, rel, body, sha);
      t.ok(r.status === 400 || r.status === 404, `${rel}: refused (${r.status} ${r.code ?? ""})`);
    }
    const wrong = await putLayer(b, "snapshots/data.1.qcow2", body, "0".repeat(64));
    t.same([wrong.status, wrong.code], [400, "VMH_ERR_VALIDATION"], "a body not matching its sha256 is refused");
    t.same(await leftOnB(), [], "nothing was kept on the destination");
    t.notOk(existsSync(path.join(b.stateDir, "escape.qcow2")) || existsSync(path.join(b.stateDir, "incoming-layers", "escape.qcow2")), "nothing escaped the upload directory");
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
  await writeSector(a, VM, 100, "MARK-A");
  await writeSector(a, VM, 200, "MARK-Z");
  await a.api.json("POST", `/v1/vms/${VM}/snapshots`, { name: "s1" });
  await writeSector(a, VM, 100, "MARK-B");
  await a.api.json("POST", `/v1/vms/${VM}/snapshots`, { name: "s2", memory: true });
  const vmstateSha = createHash("sha256").update(await readFile(path.join(a.stateDir, "vms", VM, "snapshots/s2.vmstate"))).digest("hex");
  // After the last snapshot: the bitmap is on the top the guest writes.
  const full = await backupData(a, VM, "sm-full.qcow2", { mode: "incremental" });
  t.equal(full.mode, "full", "the first backup is full");
  await writeSector(a, VM, 300, "MARK-C");

  t.test("a migration cancelled after the layers went leaves nothing on the destination", async (t) => {
    const job = await a.api.json<JobView>("POST", `/v1/vms/${VM}/migrate`, { destination: urlB, storage: "copy", bandwidthMiBps: 1 });
    const inRam = await waitJob(a, job.id, (j) => j.phase === "migrating-ram" || j.state !== "running", 60_000);
    t.equal(inRam.phase, "migrating-ram", `the migration reached its RAM phase (${inRam.state}: ${JSON.stringify(inRam.error ?? {})})`);
    t.ok((await filesUnder(vmDirB)).includes("disks/data.qcow2"), "the copied layer was on the destination");
    t.equal((await a.api.request("POST", `/v1/jobs/${job.id}/cancel`)).status, 202);
    const end = await waitJob(a, job.id, (j) => j.state !== "running", 60_000);
    t.equal(end.state, "cancelled");
    await waitForVm(a, VM, (v: { state: string; operation?: unknown }) => v.state === "running" && !v.operation, 60_000);
    for (let i = 0; i < 100 && (await b.api.request("GET", `/v1/vms/${VM}`)).status !== 404; i++) await new Promise((r) => setTimeout(r, 200));
    t.equal((await b.api.request("GET", `/v1/vms/${VM}`)).status, 404, "the destination has no VM");
    t.same(await leftOnB(), [], "no layer file is left on the destination");
    t.same((await findQemuProcesses(b.runDir)).filter((p) => p.name === VM), [], "no qemu on the destination");
    t.equal(await readSector(a, VM, 100), "MARK-B", "the source's guest runs on with its disk as it was");
    const names = (await a.api.json<{ snapshots: { name: string }[] }>("GET", `/v1/vms/${VM}/snapshots`)).snapshots.map((s) => s.name);
    t.same(names, ["s1", "s2"], "the source keeps its snapshots");
  });

  t.test("migrated: same chain, the snapshot listed and reverted there, the bitmap carried", async (t) => {
    const job = await migrate(a, VM, { destination: urlB, storage: "copy" });
    t.equal(job.state, "succeeded", `migration ${job.state}: ${JSON.stringify(job.error ?? {})}`);
    t.match(job.result, { tls: true }, "over TLS");
    await waitForVm(b, VM, (v: { state: string }) => v.state === "running", 60_000);
    t.equal(await readSector(b, VM, 100), "MARK-B", "the guest reads B on the destination");
    t.equal(await readSector(b, VM, 300), "MARK-C", "and the write after the backup");
    t.equal(await readSector(b, VM, 200), "MARK-Z", "and what only the copied layer holds");
    // Only the top was mirrored: the top made on the destination holds nothing at sector 200, read from the layer under it.
    const map = JSON.parse(execFileSync("qemu-img", ["map", "-U", "--output=json", "-f", "qcow2", path.join(vmDirB, "snapshots/data.2.qcow2")], { encoding: "utf8" })) as { start: number; length: number; depth: number }[];
    const at200 = map.find((m) => m.start <= 200 * 512 && 200 * 512 < m.start + m.length);
    t.ok((at200?.depth ?? 0) >= 1, "the destination's top reads sector 200 from the copied layer (the mirror copied the top only)");
    const listed = (await b.api.json<{ snapshots: { name: string }[] }>("GET", `/v1/vms/${VM}/snapshots`)).snapshots.map((s) => s.name);
    t.same(listed, ["s1", "s2"], "s1 and s2 are listed on the destination");
    const arrived = createHash("sha256").update(await readFile(path.join(vmDirB, "snapshots/s2.vmstate"))).digest("hex");
    t.equal(arrived, vmstateSha, "s2's memory state arrived byte for byte");
    t.same((await filesUnder(path.join(a.stateDir, "vms", VM))), [], "nothing of the VM is left on the source");

    await writeSector(b, VM, 500, "MARK-D");
    const inc = await backupData(b, VM, "sm-inc.qcow2", { mode: "incremental" });
    t.equal(inc.mode, "incremental", `the first backup on the destination is incremental (${inc.fullBecause ?? ""})`);
    t.equal(inc.since, full.backupId, "on the full backup taken on the source");
    await b.api.json("POST", `/v1/vms/${VM}/pause`);
    const top = path.join(vmDirB, "snapshots/data.2.qcow2");
    const same = execFileSync("qemu-img", ["compare", "-U", "-f", "qcow2", "-F", "qcow2", path.join(shared, "sm-inc.qcow2"), top], { encoding: "utf8" });
    t.match(same, /Images are identical/, "the backup chain made on two hosts is the disk byte for byte");

    await b.api.json("POST", `/v1/vms/${VM}/resume`);
    const bootId = (await shellRun(b, VM, "echo B=$(cat /proc/sys/kernel/random/boot_id)", /B=([0-9a-f-]{36})/))[1];
    await b.api.json("POST", `/v1/vms/${VM}/snapshots/s2/revert`, { force: true });
    await waitForVm(b, VM, (v: { state: string; operation?: unknown }) => v.state === "running" && !v.operation, 60_000);
    t.equal((await shellRun(b, VM, "echo B=$(cat /proc/sys/kernel/random/boot_id)", /B=([0-9a-f-]{36})/))[1], bootId, "a revert to s2 there resumes the guest from its memory (same boot)");
    t.equal(await readSector(b, VM, 500), "", "and the write made there after s2 is gone");

    await b.api.json("POST", `/v1/vms/${VM}/stop`);
    await b.api.json("POST", `/v1/vms/${VM}/snapshots/s1/revert`, {});
    const before = (await b.api.request("GET", `/v1/vms/${VM}/console/log`)).body.length;
    await b.api.json("POST", `/v1/vms/${VM}/start`);
    await consoleAfter(b, VM, before, /vmh# /, 60_000);
    t.equal(await readSector(b, VM, 100), "MARK-A", "after the revert on the destination the guest reads A, not B");
    const merge = await b.api.json<{ id: string }>("DELETE", `/v1/vms/${VM}/snapshots/s1`);
    t.equal((await waitJob(b, merge.id, (j) => j.state !== "running", 60_000)).state, "succeeded", "s1 is deleted (merged) on the destination");
    t.same((await b.api.json<{ snapshots: unknown[] }>("GET", `/v1/vms/${VM}/snapshots`)).snapshots, [], "no snapshot is left");
    t.equal(await readSector(b, VM, 100), "MARK-A", "the guest's data is intact after the merge");
    await b.api.json("POST", `/v1/vms/${VM}/stop`);
  });
});
