// Which NBD export layouts survive their clients hanging up, on this host's qemu,
// with no guest: a qemu whose one virtio-blk disk runs in an iothread under a
// throttle filter (the daemon's layout: the filter is the device's root), a point-in-time view of it exported in
// each way qemu offers, clients that connect and hang up, then: is qemu alive?
// Prints a table; exits 1 if the layout the daemon uses (a copy served by a
// qemu-nbd of its own, src/vm/backups/disk-export.ts) did not survive.
//
//   node dist/bench/nbd-export-probe.js [--cycles N]
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { open, mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MiniQmp } from "./mini-qmp.js";
import { killRawQemus, spawnRawQemu, type RawQemu } from "./raw-qemu.js";

const at = process.argv.indexOf("--cycles");
const cycles = at > 0 ? Number(process.argv[at + 1]) : 20;

interface Probe {
  dir: string;
  q: RawQemu;
  qmp: MiniQmp;
  disk: string;
}

async function startQemu(dir: string): Promise<Probe> {
  const disk = path.join(dir, "disk.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", disk, "64M"]);
  const qmpSock = path.join(dir, "qmp.sock");
  const argv = [
    "qemu-system-x86_64", "-nodefaults", "-machine", "q35,accel=tcg", "-display", "none",
    "-chardev", `socket,id=m,path=${qmpSock},server=on,wait=off`, "-mon", "chardev=m,mode=control",
    "-object", JSON.stringify({ "qom-type": "iothread", id: "io-data" }),
    "-object", JSON.stringify({ "qom-type": "throttle-group", id: "throttle0", limits: {} }),
    "-blockdev", JSON.stringify({ driver: "file", "node-name": "f-data", filename: disk, cache: { direct: true } }),
    "-blockdev", JSON.stringify({ driver: "qcow2", "node-name": "d-data", file: "f-data" }),
    // The VM's throttle filter is the device's root, over the disk's top format node.
    "-blockdev", JSON.stringify({ driver: "throttle", "node-name": "t-data", "throttle-group": "throttle0", file: "d-data" }),
    "-device", JSON.stringify({ driver: "virtio-blk-pci", id: "disk-data", drive: "t-data", iothread: "io-data" }),
  ];
  const log = await open(path.join(dir, "qemu.log"), "w");
  const q = spawnRawQemu(argv, log.fd);
  await log.close();
  const qmp = await MiniQmp.connect(qmpSock, 10_000, () => !q.exited());
  // Written through the device, so in its iothread, like a guest's write; the bitmap marks the second.
  await write(qmp, "0x11", "0");
  await qmp.execute("block-dirty-bitmap-add", { node: "d-data", name: "vmh-backup", persistent: true });
  await write(qmp, "0x22", "1M");
  return { dir, q, qmp, disk };
}

function write(qmp: MiniQmp, pattern: string, at: string): Promise<unknown> {
  return qmp.execute("human-monitor-command", { "command-line": `qemu-io -d /machine/peripheral/disk-data/virtio-backend "write -P ${pattern} ${at} 1M"` });
}

/** The disk's bitmap frozen at the instant, in the same transaction as `also`. */
function frozenBitmap(node: string, also: Record<string, unknown>[]): Record<string, unknown> {
  return {
    actions: [
      { type: "block-dirty-bitmap-add", data: { node, name: "vmh-export", persistent: node !== "d-data", disabled: true } },
      { type: "block-dirty-bitmap-merge", data: { node, target: "vmh-export", bitmaps: [{ node: "d-data", name: "vmh-backup" }] } },
      ...also,
    ],
  };
}

function client(argv: string[]): boolean {
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: "pipe", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** `cycles` clients that connect and hang up, one killed while connected; then whether qemu lives. */
async function hangUps(p: Probe, uri: string): Promise<string> {
  let served = 0;
  for (let i = 0; i < cycles && !p.q.exited(); i++) {
    if (client(["nbdinfo", "--size", uri])) served++;
    await sleep(50);
  }
  if (!p.q.exited()) {
    const held: ChildProcess = spawn("qemu-io", ["-r", "-f", "raw", uri, "-c", "sleep 60000"], { stdio: "ignore" });
    await sleep(300);
    held.kill("SIGKILL");
    await sleep(300);
  }
  if (!p.q.exited()) return `alive: ${served}/${cycles} clients served`;
  return `qemu died after ${served} client(s): ${lastLogLine(p)}`;
}

function lastLogLine(p: Probe): string {
  return execFileSync("tail", ["-n", "1", path.join(p.dir, "qemu.log")], { encoding: "utf8" }).trim();
}

async function nbdServer(p: Probe): Promise<string> {
  const sock = path.join(p.dir, "nbd.sock");
  await p.qmp.execute("nbd-server-start", { addr: { type: "unix", data: { path: sock } } });
  return sock;
}

type Layout = (p: Probe) => Promise<string>;

const layouts: Record<string, Layout> = {
  "blockdev-backup sync=none into a fleecing image, block-export-add": async (p) => {
    const sock = await nbdServer(p);
    const fleece = path.join(p.dir, "fleece.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", fleece, "64M"]);
    await p.qmp.execute("blockdev-add", { driver: "qcow2", "node-name": "fl", file: { driver: "file", filename: fleece }, backing: "d-data" });
    await p.qmp.execute("transaction", frozenBitmap("d-data", [{ type: "blockdev-backup", data: { "job-id": "fleece", device: "d-data", target: "fl", sync: "none" } }]));
    await p.qmp.execute("block-export-add", { type: "nbd", id: "e", "node-name": "fl", name: "data", writable: false, bitmaps: ["vmh-export"] });
    return hangUps(p, `nbd+unix:///data?socket=${sock}`);
  },
  "the same, exported with nbd-server-add": async (p) => {
    const sock = await nbdServer(p);
    const fleece = path.join(p.dir, "fleece.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", fleece, "64M"]);
    await p.qmp.execute("blockdev-add", { driver: "qcow2", "node-name": "fl", file: { driver: "file", filename: fleece }, backing: "d-data" });
    await p.qmp.execute("blockdev-backup", { "job-id": "fleece", device: "d-data", target: "fl", sync: "none" });
    await p.qmp.execute("nbd-server-add", { device: "fl", name: "data", writable: false });
    return hangUps(p, `nbd+unix:///data?socket=${sock}`);
  },
  "copy-before-write + snapshot-access, block-export-add": async (p) => {
    const sock = await nbdServer(p);
    const fleece = path.join(p.dir, "fleece.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", fleece, "64M"]);
    await p.qmp.execute("blockdev-add", { driver: "qcow2", "node-name": "fl", file: { driver: "file", filename: fleece } });
    try {
      await p.qmp.execute("blockdev-add", { driver: "copy-before-write", "node-name": "cbw", file: "d-data", target: "fl" });
      // Put between the throttle filter and the disk: the guest's writes then pass it.
      await p.qmp.execute("blockdev-reopen", { options: [{ driver: "throttle", "node-name": "t-data", "throttle-group": "throttle0", file: "cbw" }] });
      await p.qmp.execute("blockdev-add", { driver: "snapshot-access", "node-name": "acc", file: "cbw" });
    } catch (err) {
      await Promise.race([p.q.exit, sleep(1_000)]);
      if (p.q.exited()) return `qemu died while the chain was put in: ${lastLogLine(p)}`;
      return `refused: ${(err as Error).message.replace(/ \(uses node[^)]*\)/g, "")}`;
    }
    await p.qmp.execute("block-export-add", { type: "nbd", id: "e", "node-name": "acc", name: "data", writable: false });
    return hangUps(p, `nbd+unix:///data?socket=${sock}`);
  },
  "block-export-add with the disk's iothread, fixed-iothread": async (p) => {
    const sock = await nbdServer(p);
    try {
      await p.qmp.execute("block-export-add", { type: "nbd", id: "e", "node-name": "d-data", name: "data", writable: false, iothread: "io-data", "fixed-iothread": true });
    } catch (err) {
      return `refused: ${(err as Error).message}`;
    }
    return hangUps(p, `nbd+unix:///data?socket=${sock}`);
  },
  "the server hangs up first (block-export-del hard with a client connected)": async (p) => {
    const sock = await nbdServer(p);
    await p.qmp.execute("block-export-add", { type: "nbd", id: "e", "node-name": "d-data", name: "data", writable: false });
    const held = spawn("qemu-io", ["-r", "-f", "raw", `nbd+unix:///data?socket=${sock}`, "-c", "sleep 60000"], { stdio: "ignore" });
    await sleep(500);
    await p.qmp.execute("block-export-del", { id: "e", mode: "hard" });
    await sleep(300);
    held.kill("SIGKILL");
    await sleep(300);
    return p.q.exited() ? "qemu died" : "alive (but an outside client decides who hangs up first)";
  },
  "qemu's own NBD client looping back to its server (main-loop export)": async (p) => {
    const sock = await nbdServer(p);
    await p.qmp.execute("block-export-add", { type: "nbd", id: "in", "node-name": "d-data", name: "in", writable: false });
    const opened = p.qmp.execute("blockdev-add", { driver: "raw", "node-name": "nc", "read-only": true, file: { driver: "nbd", server: { type: "unix", path: sock }, export: "in" } });
    const r = await Promise.race([opened.then(() => "opened"), sleep(5_000).then(() => "hung")]);
    opened.catch(() => {});
    return r === "hung" ? "qemu's main loop hangs in blockdev-add (it cannot accept its own connection)" : "opened";
  },
  "a point-in-time copy (blockdev-backup sync=full) served by qemu-nbd (the daemon's)": async (p) => {
    const image = path.join(p.dir, "export.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"]);
    await p.qmp.execute("blockdev-add", { driver: "qcow2", "node-name": "ex", file: { driver: "file", filename: image }, backing: null });
    await p.qmp.execute("transaction", frozenBitmap("ex", [{ type: "blockdev-backup", data: { "job-id": "ex", device: "d-data", target: "ex", sync: "full" } }]));
    await write(p.qmp, "0x33", "0");
    for (let i = 0; i < 100 && ((await p.qmp.execute("query-block-jobs")) as unknown[]).length > 0; i++) await sleep(50);
    await p.qmp.execute("blockdev-del", { "node-name": "ex" });
    const sock = path.join(p.dir, "qemu-nbd.sock");
    const nbd = spawn("qemu-nbd", ["--read-only", "--persistent", "--shared=0", "--format=qcow2", "--export-name=data", "--bitmap=vmh-export", `--socket=${sock}`, image], { stdio: "ignore" });
    try {
      for (let i = 0; i < 100 && !(await stat(sock).then(() => true, () => false)); i++) await sleep(50);
      const uri = `nbd+unix:///data?socket=${sock}`;
      const map = execFileSync("nbdinfo", ["--map=qemu:dirty-bitmap:vmh-export", uri], { encoding: "utf8" }).trim().split("\n").filter((l) => l.includes("dirty")).join("; ");
      const copy = path.join(p.dir, "copy.raw");
      execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "raw", uri, copy]);
      const fh = await open(copy, "r");
      const first = (await fh.read(Buffer.alloc(1), 0, 1, 0)).buffer[0]!.toString(16);
      await fh.close();
      return `${await hangUps(p, uri)}; first byte 0x${first} (0x11 before the instant, 0x33 after); dirty: ${map}`;
    } finally {
      nbd.kill("SIGKILL");
    }
  },
};

async function main(): Promise<void> {
  const rows: [string, string][] = [];
  for (const [name, layout] of Object.entries(layouts)) {
    const dir = await mkdtemp(path.join(os.tmpdir(), "nbdp-"));
    let p: Probe | undefined;
    try {
      p = await startQemu(dir);
      rows.push([name, await layout(p)]);
    } catch (err) {
      rows.push([name, p?.q.exited() ? "qemu died" : `error: ${(err as Error).message}`]);
    } finally {
      p?.q.child.kill("SIGKILL");
      p?.qmp.close();
      if (p) await p.q.exit;
      await rm(dir, { recursive: true, force: true });
    }
  }
  process.stdout.write(`qemu: ${execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0]}\n\n| layout | outcome |\n|---|---|\n`);
  for (const [name, outcome] of rows) process.stdout.write(`| ${name} | ${outcome} |\n`);
  const ours = rows[rows.length - 1]![1];
  process.exitCode = ours.startsWith("alive") ? 0 : 1;
}

main().catch((err: unknown) => {
  killRawQemus();
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
