// Start latency, "start requested" → "qemu reports running", for the same guest
// started three ways: through vmhostd's API, by hand with vmhostd's own argv
// (the floor), and through libvirt. Runs are interleaved (one of each per round)
// so a slow spell on the host hits all three alike. Also prints vmhostd's RSS.
//
//   node dist/bench/start-latency.js [--runs N] [--skip-libvirt] [--smoke]
import { execFileSync } from "node:child_process";
import { constants } from "node:fs";
import { access, copyFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ensureGuest, type GuestFiles } from "./guest-files.js";
import { formatTable, medianRatio } from "./latency-stats.js";
import { defineDomain, timeLibvirtStart } from "./libvirt-domain.js";
import { ensureLibvirtInstalled, ensureQemuAccounts, PrivateLibvirt } from "./private-libvirt.js";
import { identityOfVm, killRawQemus, prepareRawDir, qmpSocketOf, relocateArgv, timeRawStart } from "./raw-qemu.js";
import { BenchRun } from "./bench-run.js";
import { BenchDaemon, daemonEntry } from "./vmhostd-daemon.js";

const VM = "benchvm";
const VCPUS = 1;
const MEMORY_MIB = 512;
const RSS_VMS_FULL = 20;
/** RSS is read after this pause so the figure is not a transient of the requests just served. */
const RSS_SETTLE_MS = 1000;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bench = new BenchRun("start-latency");

interface Options {
  runs: number;
  libvirt: boolean;
  /** VMs defined for the second RSS figure. */
  rssVms: number;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "20" },
      "skip-libvirt": { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    process.stdout.write("usage: node dist/bench/start-latency.js [--runs N] [--skip-libvirt] [--smoke]\n");
    process.exit(0);
  }
  // Smoke: every step once, no libvirt (npm test must not install it), 2 VMs for the RSS figure.
  if (values.smoke) return { runs: 1, libvirt: false, rssVms: 2 };
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, not ${values.runs}`);
  return { runs, libvirt: !values["skip-libvirt"], rssVms: RSS_VMS_FULL };
}

function createRequest(name: string, guest: GuestFiles): unknown {
  return { name, vcpus: VCPUS, memoryMiB: MEMORY_MIB, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline } };
}

async function measureRss(d: BenchDaemon, guest: GuestFiles, vms: number): Promise<{ idle: number; defined: number }> {
  await sleep(RSS_SETTLE_MS);
  const idle = await d.rssKiB();
  for (let i = 0; i < vms; i++) await d.expect(201, "POST", "/v1/vms", createRequest(`rss-${i}`, guest));
  await sleep(RSS_SETTLE_MS);
  const defined = await d.rssKiB();
  for (let i = 0; i < vms; i++) await d.expect(204, "DELETE", `/v1/vms/rss-${i}`);
  return { idle, defined };
}

/** One timed start over the API; the VM is stopped (untimed) afterwards. Returns ms and the VM object. */
async function timeVmhostdStart(d: BenchDaemon): Promise<{ ms: number; vm: Record<string, unknown> }> {
  const t0 = performance.now();
  const vm = (await d.expect(200, "POST", `/v1/vms/${VM}/start`)) as Record<string, unknown>;
  const ms = performance.now() - t0;
  d.rememberQemu(vm.pid);
  if (vm.state !== "running") throw new Error(`start answered 200 with state ${String(vm.state)}`);
  await d.expect(200, "POST", `/v1/vms/${VM}/stop`);
  return { ms, vm };
}

/** The argv vmhostd ran, from the start reply or else from GET while running. */
function argvOf(vm: Record<string, unknown>): string[] {
  const argv = vm.argv;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new Error(`the VM object has no argv: ${JSON.stringify(vm).slice(0, 300)}`);
  }
  return argv as string[];
}

async function startDaemon(guest: GuestFiles): Promise<BenchDaemon> {
  const mainJs = daemonEntry(repoRoot);
  const d = await BenchDaemon.launch(mainJs);
  bench.defer(() => d.shutdown([VM]));
  await d.waitReady();
  await copyFile(guest.kernel, path.join(d.stateDir, "images", "vmlinuz"));
  await copyFile(guest.initrd, path.join(d.stateDir, "images", "initrd.img"));
  return d;
}

/** libvirt wants the emulator as an absolute path; vmhostd may have run it by name. */
async function onPath(binary: string): Promise<string> {
  if (path.isAbsolute(binary)) return binary;
  for (const dir of (process.env.PATH ?? "").split(":").filter(Boolean)) {
    const candidate = path.join(dir, binary);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  throw new Error(`${binary} not found on PATH`);
}

/** Everything libvirt needs, or the reason it cannot run here. */
async function setUpLibvirt(guest: GuestFiles, qemuBinary: string): Promise<PrivateLibvirt | string> {
  try {
    ensureLibvirtInstalled();
    const made = ensureQemuAccounts();
    if (made.length) process.stderr.write(`created ${made.join(", ")} (libvirt's qemu driver needs them to exist)\n`);
    const lv = await PrivateLibvirt.launch();
    bench.defer(() => lv.shutdown());
    await lv.waitReady();
    const dir = await mkdtemp("/tmp/vmhb-dom-");
    bench.defer(() => rm(dir, { recursive: true, force: true }));
    await defineDomain(lv, { name: VM, vcpus: VCPUS, memoryMiB: MEMORY_MIB, guest, qemuBinary, dir });
    await timeLibvirtStart(lv, VM); // warm-up: first start fills libvirt's caches
    return lv;
  } catch (err) {
    // One line: it is printed inside the table.
    return (err as Error).message.replace(/\s*\n\s*/g, "; ");
  }
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const guest = ensureGuest(repoRoot);
  const d = await startDaemon(guest);
  const rss = await measureRss(d, guest, opts.rssVms);

  await d.expect(201, "POST", "/v1/vms", createRequest(VM, guest));
  // Warm-up (untimed), and the argv the raw side replays.
  const daemonArgv = argvOf((await timeVmhostdStart(d)).vm);
  const rawDir = await mkdtemp("/tmp/vmhb-raw-");
  bench.defer(() => rm(rawDir, { recursive: true, force: true }));
  bench.defer(async () => killRawQemus());
  const vmDirs = { runDir: path.join(d.runDir, "vms", VM), stateDir: path.join(d.stateDir, "vms", VM) };
  const rawArgv = relocateArgv(daemonArgv, vmDirs, rawDir);
  if (!qmpSocketOf(rawArgv).startsWith(rawDir)) throw new Error(`QMP socket not under ${vmDirs.runDir}: cannot relocate argv`);
  // Run as the VM's own uid, in a directory of that uid's, as the daemon runs it.
  const identity = await identityOfVm(vmDirs.runDir);
  await prepareRawDir(rawArgv, rawDir, identity);
  await timeRawStart(rawArgv, rawDir, identity); // warm-up

  const qemuBinary = await onPath(rawArgv[0]!);
  const libvirt = opts.libvirt ? await setUpLibvirt(guest, qemuBinary) : "skipped (--skip-libvirt)";
  let libvirtNote = typeof libvirt === "string" ? libvirt : undefined;

  const samples: Samples = { vmhostd: [], raw: [], lvReturned: [], lvRunning: [] };
  for (let i = 1; i <= opts.runs; i++) {
    samples.vmhostd.push((await timeVmhostdStart(d)).ms);
    samples.raw.push(await timeRawStart(rawArgv, rawDir, identity));
    if (typeof libvirt !== "string" && !libvirtNote) {
      try {
        const t = await timeLibvirtStart(libvirt, VM);
        samples.lvReturned.push(t.startReturned);
        samples.lvRunning.push(t.running);
      } catch (err) {
        libvirtNote = `stopped after failing in run ${i}: ${(err as Error).message.replace(/\s*\n\s*/g, "; ")}`;
      }
    }
    const last = (a: number[]): string => (a.length ? `${a[a.length - 1]!.toFixed(1)}` : "-");
    process.stderr.write(`run ${i}/${opts.runs}: vmhostd ${last(samples.vmhostd)}  raw ${last(samples.raw)}  libvirt ${last(samples.lvRunning)} ms\n`);
  }
  await d.expect(204, "DELETE", `/v1/vms/${VM}`);
  const libvirtVersion = typeof libvirt === "string" ? undefined : await libvirt.virsh("version", "--daemon");
  report({ opts, guest, qemuBinary, samples, rss, libvirtNote, libvirtVersion });
}

interface Samples {
  vmhostd: number[];
  raw: number[];
  lvReturned: number[];
  lvRunning: number[];
}

interface Results {
  opts: Options;
  guest: GuestFiles;
  qemuBinary: string;
  samples: Samples;
  rss: { idle: number; defined: number };
  libvirtNote?: string;
  libvirtVersion?: string;
}

function report({ opts, guest, qemuBinary, samples, rss, libvirtNote, libvirtVersion }: Results): void {
  const qemuVersion = execFileSync(qemuBinary, ["--version"], { encoding: "utf8" }).split("\n")[0];
  const daemonVersion = libvirtVersion?.split("\n").find((l) => /daemon/i.test(l))?.trim() ?? "";
  const lvLabel = "libvirt: until domstate says running";
  const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
  const out = [
    `start latency: "start requested" -> "qemu reports running"   (${opts.runs} runs each, interleaved, TCG)`,
    `guest: ${guest.kernel} + initrd, ${VCPUS} vCPU, ${MEMORY_MIB} MiB, q35, cmdline "${guest.cmdline}"`,
    `host: ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? "?"}; ${qemuVersion}; node ${process.version}`,
    "",
    formatTable([
      { label: "vmhostd: POST /start -> 200 running", samples: samples.vmhostd },
      { label: "raw qemu: same argv, QMP cont", samples: samples.raw },
      { label: "libvirt: until virsh start returns", samples: samples.lvReturned, note: `not measured: ${libvirtNote}` },
      { label: lvLabel, samples: samples.lvRunning, note: "" },
    ]),
    "",
    `median ratios: vmhostd/raw ${medianRatio(samples.vmhostd, samples.raw)}   libvirt/raw ${medianRatio(samples.lvRunning, samples.raw)}  (libvirt = "${lvLabel}")`,
    `vmhostd RSS (VmRSS): idle, 0 VMs ${mib(rss.idle)};  ${opts.rssVms} VMs defined, none running ${mib(rss.defined)}`,
    "",
    "vmhostd:  from sending POST /v1/vms/NAME/start (fresh Unix-socket connection) to its 200 reply with state running.",
    "raw qemu: vmhostd's argv (per-VM socket/pidfile/log paths moved to a temp dir of the VM's uid), spawned as that uid, detached, stdio to a file;",
    "          QMP socket polled every 2 ms until it accepts, qmp_capabilities, cont, query-status until running.",
    "libvirt:  `virsh start` (a new virsh process, as an operator would run it) then `virsh domstate` until it prints running;",
    `          private libvirtd in its own mount namespace, qemu as root. ${libvirtNote ? `LIBVIRT: ${libvirtNote}` : daemonVersion}`,
  ];
  process.stdout.write(out.join("\n") + "\n");
}

await bench.run(main);
