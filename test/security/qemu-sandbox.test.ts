// qemu runs unprivileged and sandboxed: each VM as a uid of its own from the
// qemu user's delegated range, under seccomp, and one VM's qemu cannot read
// another VM's files, shown with that uid and through that very qemu.
import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { defineGuestVm, startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";

interface VmJson {
  pid: number;
  qemuUid: number;
}

async function procIds(pid: number): Promise<{ uids: number[]; gids: number[]; seccomp: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "";
  return { uids: field("Uid").split(/\s+/).map(Number), gids: field("Gid").split(/\s+/).map(Number), seccomp: Number(field("Seccomp")) };
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
  });
}

async function qmp(d: TestDaemon, vm: string, execute: string, args: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await d.api.request("POST", `/v1/vms/${vm}/qmp`, { execute, arguments: args });
  return { status: r.status, body: JSON.parse(r.body.toString()) as Record<string, unknown> };
}

t.test("qemu runs as a uid of its own per VM, under seccomp", async (t) => {
  // The pass-through opened fully: this test asks a's qemu itself to open b's files, and the kernel must say no.
  const d = await startDaemon({ args: ["--qmp-passthrough", "all"] });
  t.teardown(() => d.cleanup());
  const qemuGid = Number((await readFile("/etc/passwd", "utf8")).split("\n").find((l) => l.startsWith("vmhostd-qemu:"))?.split(":")[3]);
  for (const name of ["a", "b"]) {
    await defineGuestVm(d, name, { disks: [{ name: "root", sizeGiB: 1 }] });
    await d.api.json("POST", `/v1/vms/${name}/start`);
  }
  await waitForBoot(d, "a", 1);
  await waitForBoot(d, "b", 1);
  const a = await d.api.json<VmJson>("GET", "/v1/vms/a");
  const b = await d.api.json<VmJson>("GET", "/v1/vms/b");
  for (const [name, vm] of [["a", a], ["b", b]] as const) {
    const ids = await procIds(vm.pid);
    t.not(vm.qemuUid, 0, `${name}: the view shows an unprivileged uid`);
    t.same(ids.uids, [vm.qemuUid, vm.qemuUid, vm.qemuUid, vm.qemuUid], `${name}: real, effective, saved and fs uid are that uid`);
    t.same(ids.gids, [qemuGid, qemuGid, qemuGid, qemuGid], `${name}: in the qemu user's group`);
    t.equal(ids.seccomp, 2, `${name}: seccomp filter mode (2)`);
  }
  t.not(a.qemuUid, b.qemuUid, "each VM has its own uid");

  const bDisk = path.join(d.stateDir, "vms/b/disks/root.qcow2");
  const st = await stat(bDisk);
  t.equal(st.uid, b.qemuUid, "b's disk belongs to b's uid");
  t.equal(st.mode & 0o777, 0o600, "mode 0600");
  t.equal((await stat(path.join(d.stateDir, "vms/b"))).mode & 0o777, 0o711, "b's directory: others may pass, not list");
  const qemuDir = await stat(path.join(d.runDir, "vms/b/qemu"));
  t.ok(qemuDir.uid === b.qemuUid && (qemuDir.mode & 0o777) === 0o700, "b's sockets live in a directory only b's qemu can enter");
  t.equal((await stat(path.join(d.stateDir, "vms/b/definition.json"))).uid, 0, "the definition stays root's");

  const asA = ["--reuid", String(a.qemuUid), "--regid", String(qemuGid), "--clear-groups", "head", "-c", "16"];
  const steal = await run("setpriv", [...asA, bDisk]);
  t.not(steal.code, 0, "a's uid cannot read b's disk");
  t.match(steal.stderr, /Permission denied/);
  t.equal((await run("setpriv", [...asA, path.join(d.stateDir, "vms/a/disks/root.qcow2")])).code, 0, "but reads its own");

  // Through a's qemu itself: told to open b's disk, it cannot.
  const opened = await qmp(d, "a", "blockdev-add", { driver: "file", "node-name": "steal", filename: bDisk, "read-only": true });
  t.equal(opened.status, 422, "a's qemu refuses to open b's disk");
  t.match(String(opened.body.qemuDesc), /Permission denied/, "because the kernel says no");
  const debugSock = await qmp(d, "a", "chardev-add", { id: "peek", backend: { type: "socket", data: { addr: { type: "unix", data: { path: path.join(d.runDir, "vms/b/qemu/peek.sock") } }, server: true, wait: false } } });
  t.equal(debugSock.status, 422, "nor create anything in b's run directory");

  // A disk hot-added to a is handed to a's uid before a's qemu opens it.
  const added = await d.api.request("POST", "/v1/vms/a/disks", { name: "extra", sizeGiB: 1 });
  t.equal(added.status, 201, "a disk hot-added to a");
  t.equal((await stat(path.join(d.stateDir, "vms/a/disks/extra.qcow2"))).uid, a.qemuUid, "the new disk is a's");

  // Uids stay with their VMs across a stop and start.
  await d.api.json("POST", "/v1/vms/b/stop");
  await d.api.json("POST", "/v1/vms/b/start");
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/b")).qemuUid, b.qemuUid, "b keeps its uid");
});

t.test("--qemu-user root is explicit and warned about; an unknown user stops the daemon", async (t) => {
  const d = await startDaemon({ args: ["--qemu-user", "root"] });
  t.teardown(() => d.cleanup());
  t.match(d.log(), /qemu runs as root/, "a warning at start-up");
  await defineGuestVm(d, "r");
  const vm = await d.api.json<VmJson>("POST", "/v1/vms/r/start");
  const ids = await procIds(vm.pid);
  t.equal(ids.uids[0], 0, "qemu runs as root");
  t.equal(ids.seccomp, 2, "still sandboxed");
  await d.api.json("POST", "/v1/vms/r/stop");

  const bad = await startDaemon({ args: ["--qemu-user", "no-such-user"] }).then(
    (x) => x.cleanup().then(() => undefined),
    (err: Error) => err.message,
  );
  t.match(bad, /--qemu-user \(VMHOSTD_QEMU_USER\): no user "no-such-user"/, "a user that does not exist is a start-up error naming the setting");
});
