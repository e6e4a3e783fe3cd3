// vmctl evacuate / resume-host: host maintenance. evacuate follows the evacuation
// job, a line on stderr each time a VM changes state, then a table of where each VM
// went (or why it stays) on stdout; exit status 1 unless every VM moved.
// resume-host ends maintenance (`resume` is taken: it continues a paused VM).
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import type { CliIo } from "./storage-commands.js";
import type { JobJson } from "./vm-format.js";

interface ItemJson {
  vm: string;
  state: string;
  destination?: string;
  reason?: string;
}
type EvacuationJson = JobJson & { items?: ItemJson[] };

interface EvacuateFlags {
  to?: string[];
  parallel?: number;
  storage?: string;
  bandwidth?: number;
  wait: boolean;
}

const POLL_MS = 250;

export function registerMaintenanceCommands(program: Command, d: CliIo, toInt: (v: string) => number): void {
  program
    .command("evacuate")
    .description("put this host in maintenance and live-migrate every running VM away (to fleet hosts by free memory, or --to)")
    .option("--to <host...>", "destinations: fleet host ids, or API URLs (required without fleet mode)")
    .option("--parallel <n>", "VMs migrating at once (default 2)", toInt)
    .option("--storage <mode>", "shared (both hosts see the images) or copy (disks are copied; default)")
    .option("--bandwidth <MiBps>", "bandwidth limit of each migration", toInt)
    .option("--no-wait", "return once the evacuation has started")
    .action(async (o: EvacuateFlags) => {
      process.exitCode = await evacuate(d, o);
    });

  program
    .command("resume-host")
    .description("end this host's maintenance (stops a running evacuation first): starts and incoming migrations are taken again")
    .action(async () => {
      const view = await d.client().json<Record<string, unknown>>("POST", "/v1/host/resume");
      d.out(d.json() ? JSON.stringify(view, null, 2) : "maintenance ended: the host takes starts and incoming migrations again");
    });
}

async function evacuate(d: CliIo, o: EvacuateFlags): Promise<number> {
  const api = d.client();
  const job = await api.json<EvacuationJson>("POST", "/v1/host/evacuate", {
    ...(o.to ? { to: o.to } : {}),
    ...(o.parallel !== undefined ? { parallel: o.parallel } : {}),
    ...(o.storage ? { storage: o.storage } : {}),
    ...(o.bandwidth !== undefined ? { bandwidthMiBps: o.bandwidth } : {}),
  });
  if (!o.wait) {
    d.out(d.json() ? JSON.stringify(job) : `evacuation job ${job.id} started; the host is in maintenance`);
    return 0;
  }
  const seen = new Map<string, string>();
  let end = job;
  for (;;) {
    for (const item of end.items ?? []) {
      const line = itemLine(item);
      if (seen.get(item.vm) === line) continue;
      seen.set(item.vm, line);
      process.stderr.write(`${line}\n`);
    }
    if (end.state !== "running") break;
    await sleep(POLL_MS);
    end = await api.json<EvacuationJson>("GET", `/v1/jobs/${job.id}`);
  }
  if (d.json()) d.out(JSON.stringify(end, null, 2));
  else {
    const items = end.items ?? [];
    const table = d.table(
      ["VM", "STATE", "DESTINATION", "WHY"],
      items.map((i) => [i.vm, i.state, i.destination ?? "-", i.reason ?? "-"]),
    );
    const p = end.progress;
    const summary = `evacuation ${end.state}: ${p.done ?? 0} moved, ${p.failed ?? 0} failed, ${p.skipped ?? 0} skipped in ${end.result?.durationMs ?? "?"} ms; the host stays in maintenance (vmctl resume-host ends it)`;
    d.out(items.length ? `${table}\n${summary}` : `no VM runs here; ${summary}`);
  }
  return end.state === "succeeded" ? 0 : 1;
}

function itemLine(i: ItemJson): string {
  const where = i.destination ? ` → ${i.destination}` : "";
  return `${i.vm}: ${i.state}${where}${i.reason ? ` (${i.reason})` : ""}`;
}
