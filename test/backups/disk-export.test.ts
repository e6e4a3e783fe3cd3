// Pull-mode backup over NBD against real qemu and a writing guest: the export
// read by qemu-img convert is the disk as it was when the export began, though
// the guest writes on; nbdinfo --map shows the dirty bitmap as of then (only the
// block written since the last backup); 20 clients that connect and hang up (one
// killed mid-connection) leave the guest running (qemu 7.2 aborts when a client
// of its own NBD server in an iothread hangs up: that design would fail here);
// a second export of the disk is refused; another uid cannot connect; an
// export cut short by a daemon SIGKILL is torn down at the restart, one that
// serves outlives a daemon SIGKILL and is found again; DELETE ends it (a new
// connection is refused, the image is gone), and so does the VM's stop, which
// also cuts short an export still copying. On TCP
// with TLS, a client with another CA's certificate, or without TLS, is refused;
// the copy keeps to its bandwidth limit.
import { execFileSync, spawn } from "node:child_process";
import { copyFile, mkdir, open, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { consoleSize, defineShellVm, problem, consoleAfter, startDaemon, waitForVm, runVmctl, type TestDaemon } from "../helpers/daemon.js";
import { shellRun, writeSector } from "../helpers/guest-shell.js";
import { makeCertDir } from "../helpers/tls-certs.js";
import { checkHeldEvents } from "../helpers/event-check.js";

const VM = "ex";
const SECTOR = 50_000;

interface ExportJson {
  id: string;
  disk: string;
  socket: string;
  uri: string;
  bitmap?: string;
}

const exists = (f: string): Promise<boolean> => stat(f).then(() => true, () => false);

/** Connects and reads the size (as root, or as uid nobody with its own group or the daemon's): true if the server answered. */
function nbdAnswers(uri: string, as?: "nobody" | "group"): boolean {
  const gid = as === "group" ? String(process.getgid!()) : "65534";
  const argv = as ? ["setpriv", "--reuid=65534", `--regid=${gid}`, "--clear-groups", "nbdinfo", "--size", uri] : ["nbdinfo", "--size", uri];
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: "pipe", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** qemu-nbd processes still running for this daemon (a test that failed must not leave them). */
async function servers(d: TestDaemon): Promise<number[]> {
  const found: number[] = [];
  for (const n of await readdir("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    const argv = (await readFile(`/proc/${n}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (path.basename(argv[0] ?? "") === "qemu-nbd" && argv.some((a) => a.startsWith(`--pid-file=${d.runDir}`))) found.push(Number(n));
  }
  return found;
}

/** A directory of client credentials as qemu's tls-creds-x509 reads them. */
async function clientDir(d: TestDaemon, name: string, caCert: string, cert: { cert: string; key: string }): Promise<string> {
  const dir = path.join(d.root, `tls-${name}`);
  await mkdir(dir);
  await copyFile(caCert, path.join(dir, "ca-cert.pem"));
  await copyFile(cert.cert, path.join(dir, "client-cert.pem"));
  await copyFile(cert.key, path.join(dir, "client-key.pem"));
  return dir;
}

/** qemu-img info of the TLS export with the client credentials in `dir`: true if it was served. */
function tlsAnswers(dir: string, port: number): boolean {
  try {
    execFileSync("qemu-img", ["info", "--object", `tls-creds-x509,id=t0,endpoint=client,dir=${dir}`, "--image-opts", `driver=nbd,host=127.0.0.1,port=${port},export=data,tls-creds=t0`], { stdio: "pipe", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function sectorOf(file: string): Promise<string> {
  const fh = await open(file, "r");
  const at = Buffer.alloc(8);
  await fh.read(at, 0, 8, SECTOR * 512);
  await fh.close();
  return at.toString();
}

t.test("a pull-mode NBD export of a running guest's disk", async (t) => {
  // The daemon kills itself once the first export's qemu-nbd serves, before the record names it.
  const env: NodeJS.ProcessEnv = { VMHOSTD_TEST_CRASH_AT: "export-serving" };
  const certs = await makeCertDir();
  const ca = await certs.ca("ca");
  const hostCert = await ca.issue("host", { ips: ["127.0.0.1"] });
  const d = await startDaemon({ env, args: ["--tls-cert", hostCert.cert, "--tls-key", hostCert.key, "--tls-ca", ca.cert] });
  t.teardown(async () => {
    for (const pid of await servers(d)) process.kill(pid, "SIGKILL");
    await d.cleanup();
    await certs.cleanup();
  });
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/disks`, { name: "data", sizeGiB: 0.0625 });
  await d.api.json("POST", `/v1/vms/${VM}/disks`, { name: "aux", sizeGiB: 0.0625 });
  const from = await consoleSize(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await waitForVm(d, VM, (v: { state: string }) => v.state === "running", 60_000);
  await consoleAfter(d, VM, from, /vmh# /, 60_000);
  await shellRun(d, VM, "echo P$((2+3))", /P5/, 60_000);

  // A full backup clears the bitmap; the one write after it is what the export's bitmap must show.
  const job = await d.api.json<{ id: string }>("POST", `/v1/vms/${VM}/disks/data/backup`, { target: "full.qcow2", format: "qcow2" });
  for (let i = 0; i < 300 && (await d.api.json<{ state: string }>("GET", `/v1/jobs/${job.id}`)).state === "running"; i++) await sleep(100);
  await writeSector(d, VM, SECTOR, "OLD-MARK");

  const image = path.join(d.stateDir, "vms", VM, "exports", "data.qcow2");
  const cut = await d.api.request("POST", `/v1/vms/${VM}/disks/data/export`).catch((e: unknown) => e);
  t.ok(cut instanceof Error || (cut as { status: number }).status >= 500, "an export cut short by the daemon's death");
  for (let i = 0; i < 600 && d.proc.exitCode === null && d.proc.signalCode === null; i++) await sleep(100);
  t.equal((await servers(d)).length, 1, "its qemu-nbd serves on, unrecorded");
  delete env.VMHOSTD_TEST_CRASH_AT;
  await d.restart();
  await waitForVm(d, VM, (v: { state: string }) => v.state === "running", 60_000);
  for (let i = 0; i < 100 && ((await servers(d)).length > 0 || (await exists(image))); i++) await sleep(100);
  t.equal((await servers(d)).length, 0, "the restarted daemon stops the unrecorded server");
  t.notOk(await exists(image), "and removes its image");

  const exp = await d.api.json<ExportJson>("POST", `/v1/vms/${VM}/disks/data/export`);
  t.equal(exp.bitmap, "vmh-export", "the dirty bitmap is published");
  await writeSector(d, VM, SECTOR, "NEW-MARK");

  const copy = path.join(d.root, "export.raw");
  execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "raw", exp.uri, copy]);
  t.equal(await sectorOf(copy), "OLD-MARK", "qemu-img convert reads the disk as it was when the export began, not the guest's later write");
  const extents = JSON.parse(execFileSync("nbdinfo", ["--json", `--map=qemu:dirty-bitmap:${exp.bitmap}`, exp.uri], { encoding: "utf8" })) as { offset: number; length: number; type: number }[];
  const dirty = extents.filter((e) => e.type !== 0);
  const dirtyBytes = dirty.reduce((n, e) => n + e.length, 0);
  t.ok(dirty.some((e) => e.offset <= SECTOR * 512 && SECTOR * 512 < e.offset + e.length), "nbdinfo --map shows the block written after the full backup as dirty");
  t.ok(dirtyBytes > 0 && dirtyBytes <= 1024 * 1024, `and little else (${dirtyBytes} bytes dirty)`);

  t.equal((await problem(d, "POST", `/v1/vms/${VM}/disks/data/export`)).code, "VMH_ERR_EXPORT_EXISTS", "a second export of the disk is refused");
  const slow = await d.api.json<{ id: string }>("POST", `/v1/vms/${VM}/disks/data/backup`, { target: "slow.qcow2", format: "qcow2", speedMiBps: 1 });
  t.equal((await problem(d, "POST", `/v1/vms/${VM}/disks/data/export`)).code, "VMH_ERR_VM_BUSY", "an export while a backup copies the disk is refused");
  await d.api.json("POST", `/v1/jobs/${slow.id}/cancel`);
  for (let i = 0; i < 100 && (await d.api.json<{ state: string }>("GET", `/v1/jobs/${slow.id}`)).state === "running"; i++) await sleep(100);
  t.equal((await problem(d, "POST", `/v1/vms/${VM}/disks/nope/export`)).code, "VMH_ERR_DEVICE_NOT_FOUND");
  t.notOk(nbdAnswers(exp.uri, "nobody"), "another uid, not in the daemon's group, cannot connect");
  t.ok(nbdAnswers(exp.uri, "group"), "another uid in the daemon's group can");

  // Clients that come and go, one of them killed while connected.
  let answered = 0;
  for (let i = 0; i < 20; i++) if (nbdAnswers(exp.uri)) answered++;
  const held = spawn("qemu-io", ["-r", "-f", "raw", exp.uri, "-c", "sleep 60000"], { stdio: "ignore" });
  await sleep(500);
  held.kill("SIGKILL");
  await sleep(300);
  t.equal(answered, 20, "20 connect and disconnect cycles were served");
  const vm = await d.api.json<{ state: string; qemuAlive?: boolean }>("GET", `/v1/vms/${VM}`);
  t.equal(vm.state, "running", "the guest runs on after its export's clients hung up");
  await shellRun(d, VM, "echo Q$((3+4))", /Q7/);

  // A daemon killed while the export serves finds it again.
  await d.kill();
  await d.restart();
  await waitForVm(d, VM, (v: { state: string }) => v.state === "running", 60_000);
  const listed = await d.api.json<{ exports: ExportJson[] }>("GET", `/v1/vms/${VM}/exports`);
  t.same(listed.exports.map((e) => e.uri), [exp.uri], "the export is re-adopted after a daemon SIGKILL");
  t.ok(nbdAnswers(exp.uri), "and still serves");
  const table = await runVmctl(d, "exports", VM);
  t.match(table.stdout, new RegExp(`^data\\s.*${exp.uri.replace(/[?.+]/g, "\\$&")}\\s+vmh-export$`, "m"), "vmctl exports lists it");

  t.ok(await exists(image), "the export's image is beside the VM's disks while it serves");
  const out = await runVmctl(d, "unexport", VM, "data");
  t.equal(out.code, 0, `vmctl unexport: ${out.stderr}`);
  t.notOk(nbdAnswers(exp.uri), "DELETE ends the export: a new connection is refused");
  t.notOk(await exists(image), "and its image is gone");
  t.same((await servers(d)).length, 0, "its server is gone");
  t.equal((await problem(d, "DELETE", `/v1/vms/${VM}/disks/data/export`)).code, "VMH_ERR_EXPORT_NOT_FOUND");

  // On TCP with TLS: only a client with a certificate of the daemon's CA is served.
  // Its copy at 16 MiB/s: qemu counts every byte of the 64 MiB disk against the limit (about 4 s; unlimited, well under 1 s).
  const t0 = Date.now();
  const tlsExp = await d.api.json<ExportJson & { tls: boolean; socket?: string }>("POST", `/v1/vms/${VM}/disks/data/export`, { tls: true, speedMiBps: 16 });
  const copySec = (Date.now() - t0) / 1000;
  t.ok(copySec >= 2.5, `the copy of the 64 MiB disk at speedMiBps 16 took ${copySec.toFixed(1)} s`);
  const port = Number(/^nbds:\/\/127\.0\.0\.1:(\d+)\/data$/.exec(tlsExp.uri)?.[1]);
  t.ok(tlsExp.tls && port > 0 && tlsExp.socket === undefined, `a TLS export answers with an nbds:// URI (${tlsExp.uri})`);
  const ours = await clientDir(d, "ours", ca.cert, await ca.issue("backup-tool", { dns: ["backup-tool"] }));
  const rogue = await certs.ca("rogue");
  const theirs = await clientDir(d, "theirs", ca.cert, await rogue.issue("intruder", { dns: ["intruder"] }));
  t.ok(tlsAnswers(ours, port), "a client with a certificate of the daemon's CA reads the export");
  t.notOk(tlsAnswers(theirs, port), "a client with another CA's certificate is refused");
  t.notOk(nbdAnswers(`nbd://127.0.0.1:${port}/data`), "a client without TLS is refused");
  t.notOk(await exists(path.join(d.runDir, "vms", VM, "export-data-tls")), "qemu-nbd's copy of the host's key is gone once it listens");
  await d.api.json("DELETE", `/v1/vms/${VM}/disks/data/export`);
  t.notOk(tlsAnswers(ours, port), "DELETE ends the TLS export");

  // The VM's stop ends its exports.
  const again = await runVmctl(d, "export", VM, "data");
  t.equal(again.code, 0, `vmctl export: ${again.stderr}`);
  t.ok(nbdAnswers(exp.uri), "a new export of the disk serves");
  // A second disk's export copying at 1 MiB/s (a minute) when the stop comes: the stop does not wait for it.
  const slowExport = d.api.request("POST", `/v1/vms/${VM}/disks/aux/export`, { speedMiBps: 1 });
  await sleep(1_000);
  const stopAt = Date.now();
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  await waitForVm(d, VM, (v: { state: string }) => v.state === "stopped", 30_000);
  t.ok(Date.now() - stopAt < 20_000, `the stop cut the copy short (${Date.now() - stopAt} ms)`);
  t.ok((await slowExport).status >= 400, "the export whose copy the stop cut short failed");
  t.notOk(await exists(path.join(d.stateDir, "vms", VM, "exports", "aux.qcow2")), "and left no image");
  for (let i = 0; i < 50 && (await servers(d)).length > 0; i++) await sleep(100);
  t.notOk(nbdAnswers(exp.uri), "the VM's stop ends its export");
  t.notOk(await exists(image), "and removes its image");
  t.same((await d.api.json<{ exports: ExportJson[] }>("GET", `/v1/vms/${VM}/exports`)).exports, []);
  await checkHeldEvents(t, d, ["vm.disk-exported", "vm.disk-export-ended"]);
});
