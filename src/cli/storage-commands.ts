// vmctl's storage commands: pools, resize, backup. A backup follows its job with
// a progress line (a line per phase when the output is not a terminal) unless
// --no-wait; exit status 1 if it did not succeed.
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import type { ApiClient } from "./api-client.js";
import type { JobJson } from "./vm-format.js";


interface PoolJson {
  name: string;
  dir: string;
  freeBytes: number | null;
  totalBytes: number | null;
}

export interface CliIo {
  client: () => ApiClient;
  json: () => boolean;
  out: (s: string) => void;
  table: (head: string[], rows: string[][]) => string;
}

export function registerStorageCommands(program: Command, io: CliIo): void {
  program
    .command("pools")
    .description("list storage pools with their free and total space")
    .action(async () => {
      const { pools } = await io.client().json<{ pools: PoolJson[] }>("GET", "/v1/pools");
      if (io.json()) return io.out(JSON.stringify(pools, null, 2));
      io.out(io.table(["NAME", "DIR", "FREE", "TOTAL"], pools.map((p) => [p.name, p.dir, gib(p.freeBytes), gib(p.totalBytes)])));
    });

  program
    .command("resize <name> <disk> <sizeGiB>")
    .description("grow one of a VM's own disks to SIZEGiB (at once if the VM runs; disks only grow)")
    .action(async (name: string, disk: string, size: string) => {
      const sizeGiB = Number(size);
      if (!Number.isFinite(sizeGiB)) throw new Error(`not a size in GiB: ${size}`);
      const vm = await io.client().json("POST", `/v1/vms/${encodeURIComponent(name)}/disks/${encodeURIComponent(disk)}/resize`, { sizeGiB });
      io.out(io.json() ? JSON.stringify(vm, null, 2) : `${name}: disk ${disk} is now ${sizeGiB} GiB`);
    });

  program
    .command("backup <name> <disk> <target>")
    .description("live backup of a running VM's disk to TARGET, a new image in a pool")
    .option("--format <format>", "qcow2 or raw", "qcow2")
    .option("--speed <MiBps>", "bandwidth limit in MiB/s", (v) => Number(v))
    .option("--no-wait", "return once the job has started")
    .action(async (name: string, disk: string, target: string, o: { format: string; speed?: number; wait: boolean }) => {
      const api = io.client();
      const job = await api.json<JobJson>("POST", `/v1/vms/${encodeURIComponent(name)}/disks/${encodeURIComponent(disk)}/backup`, {
        target,
        format: o.format,
        ...(o.speed !== undefined ? { speedMiBps: o.speed } : {}),
      });
      if (!o.wait) return io.out(io.json() ? JSON.stringify(job) : `backup job ${job.id} started`);
      const tty = process.stderr.isTTY;
      let end = job;
      let lastPhase = "";
      for (;;) {
        end = await api.json<JobJson>("GET", `/v1/jobs/${job.id}`);
        const pct = Number(end.progress.percent ?? 0);
        if (tty) process.stderr.write(`\r${end.phase} ${pct}%\x1b[K`);
        else if (end.phase !== lastPhase) process.stderr.write(`${end.phase}\n`);
        lastPhase = end.phase;
        if (end.state !== "running") break;
        await sleep(250);
      }
      if (tty) process.stderr.write("\n");
      if (io.json()) io.out(JSON.stringify(end, null, 2));
      else if (end.state === "succeeded") io.out(`${name}: disk ${disk} backed up to ${String(end.result?.target)}`);
      else io.out(`${name}: backup ${end.state}: ${end.error?.detail ?? ""} (${end.error?.code ?? ""})`);
      if (end.state !== "succeeded") process.exitCode = 1;
    });
}

function gib(v: number | null): string {
  return v === null ? "-" : `${(v / 1024 ** 3).toFixed(1)} GiB`;
}
