// Hostile images against a real daemon and qemu. A guest writes a qcow2 header
// naming a host file as its backing file onto its raw disk; the operator backs
// that disk up into a pool and imports it: the host file never reaches a disk.
// Pool images naming files outside the pools (backing file, data file), chains
// too deep or looping, and hard links to outside files are refused, naming the
// field; a raw-declared file with a qcow2 header is read as raw.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, link, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import type { JobView } from "../../src/jobs/job-registry.js";
import { openConsole, type ConsoleClient } from "../helpers/console-socket.js";
import { defineGuestVm, installGuest, startDaemon, waitForConsole, type TestDaemon } from "../helpers/daemon.js";
import { waitJob } from "../helpers/migration.js";

const SECRET = `VMH-HOST-SECRET-${randomBytes(8).toString("hex")}`;

const img = (...args: string[]): string => execFileSync("qemu-img", args, { encoding: "utf8" });

/** The image's guest-visible bytes, read by qemu-img in its declared format. */
async function guestBytes(d: TestDaemon, file: string, format: "qcow2" | "raw"): Promise<Buffer> {
  const out = path.join(d.root, `read-${randomBytes(4).toString("hex")}.raw`);
  img("convert", "-q", "-f", format, "-O", "raw", file, out);
  const bytes = await readFile(out);
  await rm(out);
  return bytes;
}

async function refused(d: TestDaemon, method: string, url: string, body: unknown): Promise<{ status: number; code?: string; field?: string; reason?: string }> {
  const res = await d.api.request(method, url, body);
  return { status: res.status, ...(JSON.parse(res.body.toString()) as { code?: string; field?: string; reason?: string }) };
}

/** Runs a shell line in the guest and waits for its end marker; returns the output between. */
async function guestRun(con: ConsoleClient, line: string, timeoutMs = 30_000): Promise<string> {
  const tag = `VMH-END-${randomBytes(3).toString("hex")}`;
  const from = con.text().length;
  // The marker is built by the shell, so the echoed command line itself never matches.
  con.type(`${line}; echo ${tag.slice(0, 8)}""${tag.slice(8)}\n`);
  const text = await con.waitFor(new RegExp(`^${tag}\\r?$`, "m"), timeoutMs, from);
  return text.slice(0, text.indexOf(`\n${tag}`));
}

t.test("hostile images", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const images = path.join(d.stateDir, "images");
  const outside = path.join(d.root, "outside");
  await mkdir(outside, { mode: 0o755 });
  const secretFile = path.join(outside, "secret");
  await writeFile(secretFile, `${SECRET}\n`.repeat(4096), { mode: 0o600 });

  const g = await installGuest(d);
  await defineGuestVm(d, "tenant", {
    boot: { kernel: g.kernel, initrd: g.initrd, cmdline: `${g.cmdline} vmh.shell=1` },
    disks: [{ name: "data", sizeGiB: 0.0625, format: "raw" }],
  });
  await d.api.json("POST", "/v1/vms/tenant/start");
  await waitForConsole(d, "tenant", /vmh# /);
  const con = await openConsole(d, "tenant", "rw");
  t.teardown(() => con.ws.close());

  await t.test("a guest's qcow2 header on its raw disk never reaches the host's secret", async (t) => {
    // What the guest writes: the first bytes of a qcow2 whose backing file is the host's secret.
    const hdr = path.join(d.root, "hdr.qcow2");
    img("create", "-q", "-f", "qcow2", "-b", secretFile, "-F", "raw", hdr);
    const cluster = (await readFile(hdr)).subarray(0, 65536);
    let end = cluster.length;
    while (end > 0 && cluster[end - 1] === 0) end--;
    const b64 = cluster.subarray(0, end).toString("base64");
    const wrote = await guestRun(con, `echo ${b64} | base64 -d | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null; head -c 4 /dev/vda | od -An -tx1`);
    t.match(wrote, /51 46 49 fb/, "the guest wrote a qcow2 magic onto its raw disk");

    const importOf = async (name: string, disk: Record<string, unknown>): Promise<void> => {
      const res = await d.api.request("POST", "/v1/vms", { name, memoryMiB: 64, disks: [{ name: "root", ...disk }] });
      t.equal(res.status, 201, `${JSON.stringify(disk)} is accepted: ${res.body.toString().slice(0, 300)}`);
      const bytes = await guestBytes(d, path.join(d.stateDir, "vms", name, "disks", "root.qcow2"), "qcow2");
      t.equal(bytes.indexOf(SECRET), -1, `${name}: the new disk never holds the host's secret`);
      t.same(bytes.subarray(0, 4), Buffer.from([0x51, 0x46, 0x49, 0xfb]), `${name}: it holds the guest's bytes`);
    };
    // An operator's plain copy of the guest's disk, as an .img.
    await copyFile(path.join(d.stateDir, "vms/tenant/disks/data.raw"), path.join(images, "tenant-copy.img"));
    await importOf("imp-copy", { importImage: "tenant-copy.img" });

    const backup = async (target: string, format: "qcow2" | "raw"): Promise<void> => {
      const job = await d.api.json<JobView>("POST", "/v1/vms/tenant/disks/data/backup", { target, format });
      t.equal((await waitJob(d, job.id, (j) => j.state !== "running", 60_000)).state, "succeeded", `backup to ${target}`);
    };
    await backup("tenant.img", "raw");
    await backup("tenant.qcow2", "qcow2");
    const qInfo = JSON.parse(img("info", "-f", "qcow2", "--output=json", path.join(images, "tenant.qcow2"))) as Record<string, unknown>;
    t.equal(qInfo["backing-filename"], undefined, "a qcow2 backup carries no backing reference");
    t.same((await readFile(path.join(images, "tenant.img"))).subarray(0, 4), Buffer.from([0x51, 0x46, 0x49, 0xfb]), "the raw backup holds the guest's bytes");
    // The operator's slip: a raw backup under a .qcow2 name.
    await copyFile(path.join(images, "tenant.img"), path.join(images, "misnamed.qcow2"));

    const imports: Array<[string, Record<string, unknown>]> = [
      ["imp-img", { importImage: "tenant.img" }],
      ["imp-raw", { importImage: "tenant.img", sourceFormat: "raw" }],
      ["imp-qcow2", { importImage: "tenant.qcow2" }],
      ["imp-misnamed-raw", { importImage: "misnamed.qcow2", sourceFormat: "raw" }],
      ["ovl-img", { backingImage: "tenant.img" }],
    ];
    for (const [name, disk] of imports) await importOf(name, disk);
    for (const disk of [
      { importImage: "tenant.img", sourceFormat: "qcow2" },
      { importImage: "misnamed.qcow2" },
      { backingImage: "misnamed.qcow2" },
    ]) {
      const key = "importImage" in disk ? "importImage" : "backingImage";
      const r = await refused(d, "POST", "/v1/vms", { name: "bad", disks: [{ name: "root", ...disk }] });
      t.match(r, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: `disks.0.${key}`, reason: /outside every storage pool/ }, `${JSON.stringify(disk)}: read as qcow2, refused`);
    }
    const noName = path.join(images, "tenant.bin");
    await copyFile(path.join(images, "tenant.img"), noName);
    t.match(await refused(d, "POST", "/v1/vms", { name: "bad", disks: [{ name: "root", importImage: "tenant.bin" }] }), { status: 400, code: "VMH_ERR_VALIDATION", field: "disks.0.sourceFormat" }, "a name that says no format needs sourceFormat");

    // In place and declared raw, the guest sees the header's bytes, not the backing file's.
    const added = await d.api.request("POST", "/v1/vms/tenant/disks", { name: "peek", image: "tenant.img", format: "raw" });
    t.equal(added.status, 201, "the raw backup hot-plugged as a raw disk");
    await guestRun(con, "i=0; while [ ! -b /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done");
    const peek = await guestRun(con, "head -c 4 /dev/vdb | od -An -tx1; head -c 1048576 /dev/vdb | tr '\\000' '\\n' | grep -c VMH-HOST-SECRET");
    t.match(peek, /51 46 49 fb/, "the guest reads the qcow2 magic");
    t.match(peek, /^0\r?$/m, "and no line of the secret");
    t.match(await refused(d, "POST", "/v1/vms/tenant/disks", { name: "peek2", image: "misnamed.qcow2", format: "qcow2" }), { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "image" }, "declared qcow2 in place: refused");
  });

  await t.test("pool images naming files outside the pools, deep chains and loops are refused", async (t) => {
    img("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/hostname", "-F", "raw", path.join(images, "etc.qcow2"), "1M");
    // Making an image with a data file writes that file: a throw-away one outside the pools.
    img("create", "-q", "-f", "qcow2", "-o", `data_file=${path.join(outside, "data.bin")},data_file_raw=on`, path.join(images, "df.qcow2"), "1M");
    for (const [file, reason] of [["etc.qcow2", /backing file "\/etc\/hostname" lies outside every storage pool/], ["df.qcow2", /data file .* lies outside every storage pool/]] as const) {
      for (const key of ["backingImage", "importImage", "image"]) {
        const r = await refused(d, "POST", "/v1/vms", { name: "bad", disks: [{ name: "root", [key]: file }] });
        t.match(r, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: `disks.0.${key}`, reason }, `${file} as ${key}`);
      }
      const hot = await refused(d, "POST", "/v1/vms/tenant/disks", { name: "hot", image: file });
      t.match(hot, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "image", reason }, `${file} hot-plugged`);
    }

    const base = path.join(images, "chain-base.raw");
    img("create", "-q", "-f", "raw", base, "16M");
    execFileSync("qemu-io", ["-f", "raw", "-c", "write -P 0x7e 0 64k", base]);
    let below = "chain-base.raw";
    let fmt = "raw";
    for (let i = 1; i <= 9; i++) {
      img("create", "-q", "-f", "qcow2", "-b", below, "-F", fmt, path.join(images, `c${i}.qcow2`));
      [below, fmt] = [`c${i}.qcow2`, "qcow2"];
    }
    t.match(await refused(d, "POST", "/v1/vms", { name: "bad", disks: [{ name: "root", backingImage: "c9.qcow2" }] }), { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", reason: /deeper than 8/ }, "a chain of 9 backing files is refused");
    img("create", "-q", "-f", "qcow2", "-b", "chain-base.raw", "-F", "raw", path.join(images, "loop-b.qcow2"));
    img("create", "-q", "-f", "qcow2", "-b", "loop-b.qcow2", "-F", "qcow2", path.join(images, "loop-a.qcow2"));
    img("rebase", "-q", "-u", "-f", "qcow2", "-b", "loop-a.qcow2", "-F", "qcow2", path.join(images, "loop-b.qcow2"));
    t.match(await refused(d, "POST", "/v1/vms", { name: "bad", disks: [{ name: "root", importImage: "loop-a.qcow2" }] }), { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", reason: /loops/ }, "a looping chain is refused");

    t.equal((await d.api.request("POST", "/v1/vms", { name: "chain-ovl", disks: [{ name: "root", backingImage: "c3.qcow2" }] })).status, 201, "a chain inside the pool is a base");
    t.equal((await d.api.request("POST", "/v1/vms", { name: "chain-imp", disks: [{ name: "root", importImage: "c8.qcow2" }] })).status, 201, "and can be imported");
    const copy = path.join(d.stateDir, "vms/chain-imp/disks/root.qcow2");
    t.equal((JSON.parse(img("info", "-f", "qcow2", "--output=json", copy)) as Record<string, unknown>)["backing-filename"], undefined, "the copy depends on nothing");
    t.ok((await guestBytes(d, copy, "qcow2")).subarray(0, 65536).every((b) => b === 0x7e), "and holds the base's data through the chain");
  });

  await t.test("a hard link to a file outside the pools is never handed to qemu", async (t) => {
    const victim = path.join(outside, "victim.raw");
    img("create", "-q", "-f", "raw", victim, "1M");
    await link(victim, path.join(images, "linked.raw"));
    const r = await refused(d, "POST", "/v1/vms", { name: "bad", disks: [{ name: "root", image: "linked.raw", format: "raw" }] });
    t.match(r, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "disks.0.image", reason: /hard links/ }, "refused at create");
    const hot = await refused(d, "POST", "/v1/vms/tenant/disks", { name: "linked", image: "linked.raw", format: "raw" });
    t.match(hot, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "image" }, "refused as a hot-plugged disk");

    // Linked after the create: the start refuses it.
    img("create", "-q", "-f", "raw", path.join(images, "late.raw"), "1M");
    await defineGuestVm(d, "late", { disks: [{ name: "root", image: "late.raw", format: "raw" }] });
    await rm(path.join(images, "late.raw"));
    await link(victim, path.join(images, "late.raw"));
    const start = await refused(d, "POST", "/v1/vms/late/start", undefined);
    t.match(start, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "disks.0.image" }, "refused at start");
    const st = await stat(victim);
    t.ok(st.uid === 0 && (st.mode & 0o777) === 0o644, "the outside file's owner and mode are unchanged");
  });

  await t.test("a disk header rewritten after the create cannot make the next start open a host file", async (t) => {
    // The VM's own disk belongs to its qemu's uid: a guest that took its qemu over can rewrite
    // the header. Played here by root rewriting it while the VM is stopped.
    await defineGuestVm(d, "rebased", { disks: [{ name: "root", sizeGiB: 0.0625 }] });
    const own = path.join(d.stateDir, "vms/rebased/disks/root.qcow2");
    img("rebase", "-q", "-u", "-f", "qcow2", "-b", secretFile, "-F", "raw", own);
    const start = await refused(d, "POST", "/v1/vms/rebased/start", undefined);
    t.match(start, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "disks.0", reason: /lies outside every storage pool/ }, "the start is refused");
    t.equal((await d.api.json<{ state: string; pid?: number }>("GET", "/v1/vms/rebased")).state, "stopped", "and no qemu runs");

    // A pool image used in place, changed after the VM was defined.
    img("create", "-q", "-f", "qcow2", path.join(images, "inplace.qcow2"), "1M");
    await defineGuestVm(d, "inplace", { disks: [{ name: "root", image: "inplace.qcow2" }] });
    img("rebase", "-q", "-u", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", path.join(images, "inplace.qcow2"));
    const start2 = await refused(d, "POST", "/v1/vms/inplace/start", undefined);
    t.match(start2, { status: 400, code: "VMH_ERR_UNSAFE_IMAGE", field: "disks.0.image" }, "an in-place image is inspected again at start");
    t.equal((await stat(secretFile)).uid, 0, "the secret stays root's");
  });

  await d.api.json("POST", "/v1/vms/tenant/stop");
});
