// Pull-mode backup: a read-only NBD export of one disk as it was at one instant,
// with the disk's dirty bitmap as of that instant published on it, for backup
// tools that read over NBD.
//
// qemu 7.2 (as shipped) cannot serve an NBD export of a disk that runs in an
// iothread: when a client hangs up first, qemu asserts in nbd_blockdev_client_closed
// (the close is handled in the iothread, not the main loop) and aborts, taking
// the guest with it. Every fleecing layout (blockdev-backup sync=none into a
// fleecing image, copy-before-write with snapshot-access, nbd-server-add, any
// order of block-export-del and nbd-server-stop) exports a node of the disk's
// graph, which lives in the disk's iothread (bench/nbd-export-probe shows each
// on this host's qemu); and an NBD client node in qemu
// looping back to its own server deadlocks its main loop at open. So qemu here
// serves no NBD at all: the point in time is a blockdev-backup (sync full) into
// an image beside the disk, begun in one transaction with a disabled copy of
// the bitmap on that image (persistent, written into it when qemu closes it),
// and a qemu-nbd of its own, as the VM's uid, serves that image. A client that
// hangs up, or a qemu-nbd that dies, cannot end the guest. The price is a full
// copy on the host's storage per export; the network carries only what the
// tool reads.
import { chmod, chown, mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DeviceNotFound, ExportExists, ExportNotFound, StorageFailed, ValidationFailed, VmBusy, VmStateConflict } from "../../errors.js";
import { spawnChild } from "../../host/child-process.js";
import { crashPoint } from "../../migration/crash-point.js";
import { isSameProcess, readProcCmdline, readProcStartTicks, signalProcess } from "../../qemu/qemu-process.js";
import type { HostContext } from "../host-context.js";
import { activeNode } from "../snapshots/block-graph.js";
import type { Vm } from "../vm.js";
import { exportHost, freePort, tlsServerArgs, tlsUri, waitForListener, writeServerCredentials } from "./export-tls.js";
import { copyPointInTime, virtualSize } from "./export-copy.js";
import { exportImageDir, exportSocketDir, readExports, writeExports, type ExportEntry } from "./export-record.js";

const QMP_MS = 30_000;
const POLL_MS = 100;
const SERVE_WAIT_MS = 10_000;

/** What the API answers: where to connect and which bitmap to read. */
export interface DiskExport {
  id: string;
  disk: string;
  createdAt: string;
  socket?: string;
  tls: boolean;
  exportName: string;
  uri: string;
  bitmap?: string;
}

export function exportView(e: ExportEntry): DiskExport {
  const uri = e.tcp ? tlsUri(e.tcp.host, e.tcp.port, e.exportName) : `nbd+unix:///${encodeURIComponent(e.exportName)}?socket=${e.socket}`;
  return { id: e.id, disk: e.disk, createdAt: e.createdAt, ...(e.socket ? { socket: e.socket } : {}), tls: e.tcp !== undefined, exportName: e.exportName, uri, ...(e.bitmap ? { bitmap: e.bitmap } : {}) };
}

/** The qemu-nbd of an entry still serves it. */
async function serving(e: Pick<ExportEntry, "pid" | "startTicks">): Promise<boolean> {
  return isSameProcess(e.pid, e.startTicks);
}

/**
 * The VM's exports that still serve, for a reader. It changes nothing: the record
 * is rewritten only under the VM's lock, where a dead server's entry is cleaned up.
 */
export async function exportsServing(vm: Vm): Promise<DiskExport[]> {
  const all = await readExports(vm.paths);
  const live: DiskExport[] = [];
  for (const e of all) if (await serving(e)) live.push(exportView(e));
  return live;
}

/** Under the VM's lock: its exports that still serve; any other is cleaned up (its server died: a reboot, a kill). */
async function settleExports(vm: Vm): Promise<DiskExport[]> {
  const all = await readExports(vm.paths);
  const live: ExportEntry[] = [];
  for (const e of all) {
    if (await serving(e)) live.push(e);
    else {
      await removeFiles(e);
      vm.publish("vm.disk-export-ended", { disk: e.disk, reason: "server-gone" });
    }
  }
  if (live.length !== all.length) await writeExports(vm.paths, live);
  return live.map(exportView);
}

/**
 * `speedMiBps` limits the copy (it reads the disk's top format node, not
 * through the VM's throttle filter, as a backup does). `preempted`: a stop of the
 * VM does not wait for the copy; the copy is cancelled and the export fails.
 */
export async function startExport(vm: Vm, host: HostContext, diskName: string, opts: { tls?: boolean; speedMiBps?: number | undefined }, preempted?: AbortSignal): Promise<DiskExport> {
  const disk = vm.definition.disks.find((d) => d.name === diskName);
  if (!disk) throw new DeviceNotFound(`VM "${vm.name}" has no disk "${diskName}"`, { vm: vm.name, disk: diskName });
  const session = vm.session;
  if (!session?.connected) throw new VmStateConflict(vm.name, vm.settledState(), "export a disk of");
  // A backup holds no lock but copies from the same disk: one at a time.
  if (vm.job?.state === "running") throw new VmBusy(vm.name, vm.job.kind);
  if ((await settleExports(vm)).some((e) => e.disk === diskName)) throw new ExportExists(`disk "${diskName}" of VM "${vm.name}" is already exported: end that export first`, { vm: vm.name, disk: diskName });
  const tls = opts.tls === true ? host.tls : undefined;
  if (opts.tls && !tls?.verifiesClients) throw new ValidationFailed("tls: the daemon has no --tls-cert and --tls-ca to serve and check clients with", [{ field: "tls", message: "needs --tls-cert, --tls-key and --tls-ca" }]);
  const id = await host.qemuUsers.identityFor(vm.name);
  const imageDir = exportImageDir(vm.paths);
  await mkdir(imageDir, { recursive: true, mode: 0o711 });
  const image = path.join(imageDir, `${diskName}.qcow2`);
  const socketDir = exportSocketDir(vm.paths);
  await mkdir(socketDir, { recursive: true, mode: 0o750 });
  // qemu-nbd (the VM's uid) makes its socket here; the daemon's group may enter, nobody else.
  if (id) await chown(socketDir, id.uid, process.getgid!());
  await chmod(socketDir, 0o750);
  const socket = path.join(socketDir, `${diskName}.sock`);
  const pidFile = path.join(socketDir, `${diskName}.pid`);
  const credsDir = path.join(vm.paths.runDir, `export-${diskName}-tls`);
  await rm(image, { force: true });
  await rm(socket, { force: true });
  await rm(pidFile, { force: true });
  // Once started, the server is ended by any failure before the record names it.
  let server: number | undefined;
  try {
    const top = await activeNode(session, diskName);
    const size = await virtualSize(session, top.node);
    await host.qemuImg.create(image, "qcow2", size);
    if (id) await chown(image, id.uid, id.gid);
    // The instant the copy begins is the one it holds.
    const instant = new Date().toISOString();
    const bitmap = await copyPointInTime(session, diskName, top.node, image, opts.speedMiBps, preempted);
    crashPoint("export-copied");
    let tcp: { host: string; port: number } | undefined;
    let listenArgs = [`--socket=${socket}`];
    if (tls) {
      tcp = { host: exportHost(host), port: await freePort(exportHost(host)) };
      await writeServerCredentials(credsDir, tls.clientOptions(), id);
      listenArgs = tlsServerArgs(credsDir, tcp.host, tcp.port);
    }
    const child = spawnChild(
      "qemu-nbd",
      ["--read-only", "--persistent", "--shared=0", "--format=qcow2", `--export-name=${diskName}`, ...(bitmap ? [`--bitmap=${bitmap}`] : []), `--pid-file=${pidFile}`, ...listenArgs, image],
      { detached: true, stdio: "ignore", ...(id ? { uid: id.uid, gid: id.gid } : {}) },
    );
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new StorageFailed("qemu-nbd did not start");
    server = pid;
    try {
      if (tcp) await waitForListener(tcp.host, tcp.port, async () => (await readProcStartTicks(pid)) !== undefined);
      else await waitForSocket(socket, pid);
    } finally {
      await rm(credsDir, { recursive: true, force: true });
    }
    crashPoint("export-serving");
    if (!tcp) {
      // Owner and the daemon's group only: reading the export is reading the guest's disk.
      if (id) await chown(socket, id.uid, process.getgid!());
      await chmod(socket, 0o660);
    }
    const entry: ExportEntry = {
      id: `${diskName}-${Date.now().toString(36)}`,
      disk: diskName,
      image,
      ...(tcp ? { tcp } : { socket }),
      pidFile,
      exportName: diskName,
      ...(bitmap ? { bitmap } : {}),
      pid,
      startTicks: (await readProcStartTicks(pid)) ?? 0,
      createdAt: instant,
    };
    await writeExports(vm.paths, [...(await readExports(vm.paths)), entry]);
    vm.log.info({ disk: diskName, socket: tcp ? undefined : socket, tcp }, "disk export started");
    const view = exportView(entry);
    vm.publish("vm.disk-exported", { disk: diskName, uri: view.uri, tls: view.tls });
    return view;
  } catch (err) {
    if (server !== undefined) {
      try {
        process.kill(server, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await rm(socket, { force: true });
    await rm(pidFile, { force: true });
    await rm(credsDir, { recursive: true, force: true });
    await rm(image, { force: true });
    throw err instanceof StorageFailed || err instanceof VmStateConflict ? err : new StorageFailed(`export of ${diskName} failed: ${(err as Error).message}`);
  }
}

/** Ends the disk's export: its server stopped (its clients cut off), its image and socket removed. */
export async function endExport(vm: Vm, diskName: string): Promise<void> {
  const all = await readExports(vm.paths);
  const e = all.find((x) => x.disk === diskName);
  if (!e) throw new ExportNotFound(`disk "${diskName}" of VM "${vm.name}" has no export`, { vm: vm.name, disk: diskName });
  await stopServer(e);
  await removeFiles(e);
  await writeExports(vm.paths, all.filter((x) => x !== e));
  vm.log.info({ disk: diskName }, "disk export ended");
  vm.publish("vm.disk-export-ended", { disk: diskName, reason: "deleted" });
}

/** Every export of the VM ended (the VM stopped, or it is deleted). */
export async function endAllExports(vm: Vm): Promise<void> {
  const all = await readExports(vm.paths).catch(() => []);
  for (const e of all) {
    await stopServer(e).catch(() => {});
    await removeFiles(e).catch(() => {});
    vm.publish("vm.disk-export-ended", { disk: e.disk, reason: "vm-stopped" });
  }
  if (all.length) await writeExports(vm.paths, []);
}

async function stopServer(e: Pick<ExportEntry, "pid" | "startTicks">): Promise<void> {
  if (!(await signalProcess(e.pid, e.startTicks, "SIGTERM"))) return;
  for (let i = 0; i < 50 && (await serving(e)); i++) await sleep(POLL_MS);
  if (await serving(e)) await signalProcess(e.pid, e.startTicks, "SIGKILL");
}

async function removeFiles(e: Pick<ExportEntry, "socket" | "pidFile" | "image">): Promise<void> {
  if (e.socket) await rm(e.socket, { force: true });
  await rm(e.pidFile, { force: true });
  await rm(e.image, { force: true });
}

async function waitForSocket(socket: string, pid: number): Promise<void> {
  const until = Date.now() + SERVE_WAIT_MS;
  while (Date.now() < until) {
    if (await stat(socket).then((s) => s.isSocket(), () => false)) return;
    if ((await readProcStartTicks(pid)) === undefined) throw new StorageFailed("qemu-nbd ended before it served");
    await sleep(50);
  }
  throw new StorageFailed("qemu-nbd did not open its socket in time");
}

/**
 * A daemon killed while it made an export: one already recorded serves on
 * (re-adopted as it is); otherwise whatever it had made is torn down: the copy
 * job and its node in qemu, a qemu-nbd it had started, the image and socket.
 */
export async function settleInterruptedExport(vm: Vm, diskName: string): Promise<void> {
  if ((await settleExports(vm)).some((e) => e.disk === diskName)) {
    vm.log.info({ disk: diskName }, "the disk export begun before the restart serves: kept");
    return;
  }
  const session = vm.session;
  if (session?.connected) {
    await session.executeUntyped("block-job-cancel", { device: `export-${diskName}`, force: true }, QMP_MS).catch(() => {});
    for (let i = 0; i < 50; i++) {
      const jobs = (await session.executeUntyped("query-block-jobs", undefined, QMP_MS).catch(() => [])) as { device: string }[];
      if (!jobs.some((j) => j.device === `export-${diskName}`)) break;
      await sleep(POLL_MS);
    }
    await session.execute("blockdev-del", { "node-name": `ex-${diskName}` }, QMP_MS).catch(() => {});
  }
  const socket = path.join(exportSocketDir(vm.paths), `${diskName}.sock`);
  const pidFile = path.join(exportSocketDir(vm.paths), `${diskName}.pid`);
  for (const pid of await serversOf(pidFile)) {
    const ticks = await readProcStartTicks(pid);
    if (ticks !== undefined) await stopServer({ pid, startTicks: ticks });
  }
  await rm(path.join(vm.paths.runDir, `export-${diskName}-tls`), { recursive: true, force: true });
  await removeFiles({ socket, pidFile, image: path.join(exportImageDir(vm.paths), `${diskName}.qcow2`) });
  vm.log.info({ disk: diskName }, "the disk export cut short by the restart was torn down");
}

/** The qemu-nbd processes started with `pidFile` (found by their argv: the file is the server's to write). */
async function serversOf(pidFile: string): Promise<number[]> {
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((n) => /^\d+$/.test(n)).map(Number);
  const found: number[] = [];
  for (const pid of pids) {
    const argv = await readProcCmdline(pid);
    if (argv && path.basename(argv[0] ?? "") === "qemu-nbd" && argv.includes(`--pid-file=${pidFile}`)) found.push(pid);
  }
  return found;
}
