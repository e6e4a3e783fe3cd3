// Storage pools are listed with their space; a VM's disk is blank, an overlay on a
// base image (which is only ever read), or an imported copy that the VM owns.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { startDaemon, defineGuestVm, vmctlJs, waitForBoot } from "../helpers/daemon.js";

const sha256 = async (f: string): Promise<string> => createHash("sha256").update(await readFile(f)).digest("hex");
const imgInfo = (f: string): Record<string, unknown> =>
  JSON.parse(execFileSync("qemu-img", ["info", "-U", "--output=json", f], { encoding: "utf8" })) as Record<string, unknown>;

t.test("pools, backing-file overlays and imported images", async (t) => {
  const basesDir = await mkdtemp(path.join(os.tmpdir(), "vmh-bases-"));
  // A pool an unprivileged qemu can pass through, as an operator's would be.
  await chmod(basesDir, 0o755);
  const d = await startDaemon({ args: ["--pool", `bases=${basesDir}`] });
  t.teardown(async () => {
    await d.cleanup();
    await rm(basesDir, { recursive: true, force: true });
  });

  const { pools } = await d.api.json<{ pools: { name: string; dir: string; freeBytes: number; totalBytes: number }[] }>("GET", "/v1/pools");
  t.same(pools.map((p) => p.name).sort(), ["bases", "images"], "every pool is listed");
  const bases = pools.find((p) => p.name === "bases")!;
  t.equal(bases.dir, basesDir);
  t.ok(bases.freeBytes > 0 && bases.totalBytes >= bases.freeBytes, "with its free and total bytes");
  const table = execFileSync(process.execPath, [vmctlJs, "--socket", d.socket, "pools"], { encoding: "utf8" });
  t.match(table, new RegExp(`bases\\s+${basesDir}\\s+[0-9.]+ GiB`), "vmctl pools shows them");

  const base = path.join(basesDir, "base.raw");
  execFileSync("qemu-img", ["create", "-q", "-f", "raw", base, "64M"]);
  execFileSync("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 1M", base]);
  const baseSum = await sha256(base);

  const refused = async (disk: Record<string, unknown>, field: string): Promise<void> => {
    const res = await d.api.request("POST", "/v1/vms", { name: "bad", disks: [{ name: "root", ...disk }] });
    t.equal(res.status, 400, `${JSON.stringify(disk)} is refused`);
    t.match(JSON.parse(res.body.toString()), { field }, `naming ${field}`);
  };
  await refused({ backingImage: base, format: "raw" }, "disks.0.format");
  await refused({ backingImage: base, importImage: base }, "disks.0.importImage");
  await refused({ image: base, sizeGiB: 1 }, "disks.0.sizeGiB");
  await refused({}, "disks.0.sizeGiB");
  await refused({ sizeGiB: 1, cache: "writeback", aio: "native" }, "disks.0.aio");
  await refused({ backingImage: base, sizeGiB: 0.03 }, "disks.0.sizeGiB");
  await refused({ importImage: "/etc/hostname" }, "disks.0.importImage");

  // An overlay grown beyond its base: the guest sees 1 GiB, the base stays as it was.
  await defineGuestVm(d, "ov", { disks: [{ name: "root", backingImage: base, sizeGiB: 1 }] });
  const overlay = path.join(d.stateDir, "vms", "ov", "disks", "root.qcow2");
  const info = imgInfo(overlay);
  t.equal(info["backing-filename"], base, "the overlay's backing file is the base");
  t.equal(info["backing-filename-format"], "raw", "with its format recorded");
  await d.api.json("POST", "/v1/vms/ov/start");
  const m = await waitForBoot(d, "ov", 1);
  t.equal(m.disks.vda, 1024 ** 3, "the guest sees the overlay's size");
  const vm = await d.api.json<{ argv: string[] }>("GET", "/v1/vms/ov");
  const argv = vm.argv.join(" ");
  t.match(argv, /"qom-type":"iothread","id":"io-root"/, "the disk has an iothread");
  t.match(argv, /"iothread":"io-root"/, "its device runs in it");
  t.match(argv, /"aio":"(io_uring|threads)","cache":\{"direct":true/, "cache none (O_DIRECT) by default");
  await d.api.json("POST", "/v1/vms/ov/stop");
  t.equal(await sha256(base), baseSum, "the base is unchanged after a run");
  t.equal((await d.api.request("DELETE", "/v1/vms/ov")).status, 204);
  t.equal(await sha256(base), baseSum, "and still there, unchanged, after the VM is deleted");

  // An import: the VM gets its own copy, in its own format.
  await defineGuestVm(d, "imp", { disks: [{ name: "root", importImage: base, format: "qcow2" }] });
  const copy = path.join(d.stateDir, "vms", "imp", "disks", "root.qcow2");
  const copyInfo = imgInfo(copy);
  t.equal(copyInfo.format, "qcow2");
  t.equal(copyInfo["backing-filename"], undefined, "the copy depends on nothing");
  t.equal(copyInfo["virtual-size"], 64 * 1024 * 1024);
  t.match(execFileSync("qemu-io", ["-r", "-f", "qcow2", "-c", "read -P 0x5a 0 1M", copy], { encoding: "utf8" }), /read 1048576\/1048576/);
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x11 0 1M", copy]);
  t.equal(await sha256(base), baseSum, "writing the copy leaves the original alone");
  t.equal((await d.api.request("DELETE", "/v1/vms/imp")).status, 204);
  t.ok((await stat(base)).isFile(), "the imported original stays");
});
