// Re-adoption after a crash of the daemon: 20 running VMs, the daemon SIGKILLed,
// a new daemon started on the same state. Timed from spawning the new daemon to
// the API reporting every VM with its live state read from qemu (`running`).
// Printed: median, p90, min, max over --runs restarts, and the daemon's own
// figure for adoption (from its "VMs adopted" log line).
import { copyFile, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { ensureGuest } from "./guest-files.js";
import { formatTable } from "./latency-stats.js";
import { BenchDaemon } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const mainJs = path.join(repoRoot, "dist/src/main.js");

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const runs = arg("runs", 7);
  const count = arg("vms", 20);
  const guest = ensureGuest(repoRoot);
  let daemon = await BenchDaemon.launch(mainJs);
  const root = daemon.root;
  const names = Array.from({ length: count }, (_, i) => `ra${String(i).padStart(2, "0")}`);
  const pids: number[] = [];
  try {
    await daemon.waitReady();
    await copyFile(guest.kernel, path.join(daemon.stateDir, "images/vmlinuz"));
    await copyFile(guest.initrd, path.join(daemon.stateDir, "images/initrd.img"));
    for (const name of names) {
      await daemon.expect(201, "POST", "/v1/vms", {
        name,
        memoryMiB: 96,
        boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline },
      });
      const vm = (await daemon.expect(200, "POST", `/v1/vms/${name}/start`)) as { pid: number };
      daemon.rememberQemu(vm.pid);
      pids.push(vm.pid);
    }
    // Measure idle guests, not 20 TCG boots fighting over the CPUs.
    const until = Date.now() + 180_000;
    for (const name of names) {
      const log = path.join(daemon.stateDir, "vms", name, "console.log");
      while (!(await readFile(log, "utf8").catch(() => "")).includes("VMH-READY") && Date.now() < until) await sleep(200);
    }
    const wall: number[] = [];
    const own: number[] = [];
    for (let run = 0; run < runs; run++) {
      await daemon.kill();
      const logStart = (await readFile(daemon.logFile, "utf8")).length;
      const t0 = performance.now();
      daemon = await BenchDaemon.launch(mainJs, root, "info");
      for (const pid of pids) daemon.rememberQemu(pid);
      await daemon.waitReady();
      for (;;) {
        const r = await daemon.request("GET", "/v1/vms");
        const vms = (r.body as { vms: { state: string; pid?: number }[] }).vms;
        if (vms.length === count && vms.every((v) => v.state === "running" && v.pid)) break;
        await sleep(5);
      }
      wall.push(performance.now() - t0);
      // The daemon's own count starts after node has loaded; the log line may trail the API by a moment.
      for (let i = 0; i < 100; i++) {
        const m = /"ms":(\d+)[^\n]*"msg":"VMs adopted"/.exec((await readFile(daemon.logFile, "utf8")).slice(logStart));
        if (m) {
          own.push(Number(m[1]));
          break;
        }
        await sleep(20);
      }
    }
    console.log(`re-adoption after SIGKILL: ${count} running VMs (TCG guests), ${runs} restarts`);
    console.log(
      formatTable([
        { label: "spawn daemon -> all VMs running via API", samples: wall },
        { label: "daemon's own: start-up to all adopted", samples: own },
      ]),
    );
  } finally {
    await daemon.shutdown(names);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
