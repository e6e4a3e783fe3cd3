// vmctl limits NAME [--cpu-max 50 ...]: changes a VM's limits with one merge
// patch (a flag given `none` removes that limit), then prints the limits the
// VM holds, as read back from the host; without flags it only prints them.
import type { Command } from "commander";
import type { CliIo } from "./storage-commands.js";

type Value = number | null;

/** Each flag: its option text, its help and where it goes in the patch. */
const FLAGS = [
  ["--cpu-weight <n>", "relative CPU share, 1-10000 (default 100)", "cpu", "weight"],
  ["--cpu-max <percent>", "CPU cap in percent of one host core (100: one core)", "cpu", "maxPercent"],
  ["--memory-max <MiB>", "hard memory cap of qemu as a whole (at least memoryMiB + 64)", "memory", "hardMiB"],
  ["--pids <n>", "most threads qemu may have", "pids", undefined],
  ["--disk-iops <n>", "disk operations per second, read + write", "disk", "iops"],
  ["--disk-read-iops <n>", "disk reads per second", "disk", "readIops"],
  ["--disk-write-iops <n>", "disk writes per second", "disk", "writeIops"],
  ["--disk-bps <bytes>", "disk bytes per second, read + write", "disk", "bps"],
  ["--disk-read-bps <bytes>", "disk bytes read per second", "disk", "readBps"],
  ["--disk-write-bps <bytes>", "disk bytes written per second", "disk", "writeBps"],
  ["--disk-burst-iops <n>", "operations per second allowed in a burst", "disk", "burstIops"],
  ["--disk-burst-bps <bytes>", "bytes per second allowed in a burst", "disk", "burstBps"],
  ["--disk-burst-seconds <s>", "how long a burst may last", "disk", "burstSeconds"],
  ["--net-in <kbit>", "from the guest, kbit/s", "network", "ingressKbps"],
  ["--net-out <kbit>", "to the guest, kbit/s", "network", "egressKbps"],
  ["--net-burst <KiB>", "bucket size of both network limits", "network", "burstKiB"],
] as const;

/** `none` removes the limit; anything else must be a whole number (the daemon checks its range). */
function parseValue(flag: string, v: string): Value {
  if (v === "none") return null;
  if (!/^\d+$/.test(v)) throw new Error(`${flag} expects a whole number or "none", got "${v}"`);
  return Number(v);
}

const camel = (flag: string): string => flag.replace(/^--/, "").split(" ")[0]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The merge patch the flags make. */
export function limitsPatch(opts: Record<string, string | undefined>): Record<string, unknown> {
  const patch: Record<string, Record<string, Value> | Value> = {};
  for (const [flag, , group, field] of FLAGS) {
    const raw = opts[camel(flag)];
    if (raw === undefined) continue;
    const v = parseValue(flag.split(" ")[0]!, raw);
    if (field === undefined) patch[group] = v;
    else patch[group] = { ...((patch[group] as Record<string, Value> | undefined) ?? {}), [field]: v };
  }
  return patch;
}

export function registerLimitsCommand(program: Command, d: CliIo): void {
  const cmd = program
    .command("limits <name>")
    .description("change a VM's limits (at once if it runs; `none` removes one), then show those it holds");
  for (const [flag, help] of FLAGS) cmd.option(flag, help);
  cmd.action(async (name: string, opts: Record<string, string | undefined>) => {
    const patch = limitsPatch(opts);
    const path = `/v1/vms/${encodeURIComponent(name)}`;
    const vm = Object.keys(patch).length > 0
      ? await d.client().json<{ limits?: unknown; definition: { limits?: unknown } }>("PATCH", `${path}/limits`, patch)
      : await d.client().json<{ limits?: unknown; definition: { limits?: unknown } }>("GET", path);
    const shown = d.json() ? { applied: vm.limits ?? null, definition: vm.definition.limits ?? null } : undefined;
    d.out(shown ? JSON.stringify(shown, null, 2) : limitsText(vm.limits, vm.definition.limits));
  });
}

function limitsText(applied: unknown, defined: unknown): string {
  const rows = (o: unknown, prefix = ""): string[] =>
    o && typeof o === "object" ? Object.entries(o).flatMap(([k, v]) => (typeof v === "object" ? rows(v, `${prefix}${k}.`) : [`${prefix}${k} ${String(v)}`])) : [];
  const lines = [`defined: ${rows(defined).join(", ") || "none"}`];
  lines.push(applied === undefined ? "applied: (not running)" : `applied: ${rows(applied).join(", ") || "none"}`);
  return lines.join("\n");
}
